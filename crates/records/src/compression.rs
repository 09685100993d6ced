//! Compression codecs of record batches, with decompressed output bounded by
//! a caller-given limit. No size announced by the input is trusted for an
//! allocation unless it is first checked against the limit and against the
//! largest expansion the codec allows for the bytes actually present.

use std::io::{Read, Write};

use crate::{Compression, RecordsError};

/// Magic header of xerial's snappy stream framing, as the Java client writes it.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic (8) + version (4) + compatible version (4).
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block when we compress (the Java default).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// A snappy copy element of 3 bytes can emit at most 64 bytes, so raw snappy
/// expands at most 64/3 times (rounded up), plus a little for the preamble.
const SNAPPY_EXPANSION_MAX: usize = 22;
const SNAPPY_EXPANSION_SLACK_BYTES: usize = 64;
/// Zstd level used by `compress` (Kafka's default level).
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window the decoder accepts (zstd's own default limit, 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Compresses the records region of a batch. Writing into a `Vec` cannot fail,
/// so this is infallible.
pub fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + data.len() / 2);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
                let block = enc
                    .compress_vec(chunk)
                    .expect("a 32 KiB chunk is within snappy's input limit");
                let block_len =
                    i32::try_from(block.len()).expect("a compressed 32 KiB chunk fits i32");
                out.extend_from_slice(&block_len.to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            // Independent blocks, no content size: the frame shape the Java client reads.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(data).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)
            .expect("zstd compression into memory cannot fail"),
    }
}

/// Decompresses `data`, failing with `TooLarge` once the output would exceed
/// `limit_bytes`.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    limit_bytes: usize,
) -> Result<Vec<u8>, RecordsError> {
    match compression {
        Compression::None => {
            if data.len() > limit_bytes {
                return Err(RecordsError::TooLarge { limit_bytes });
            }
            Ok(data.to_vec())
        }
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(data), limit_bytes, "gzip")
        }
        Compression::Snappy => decompress_snappy(data, limit_bytes),
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(data), limit_bytes, "lz4")
        }
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| RecordsError::Decompression(format!("zstd: {e}")))?;
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| RecordsError::Decompression(format!("zstd: {e}")))?;
            read_bounded(dec, limit_bytes, "zstd")
        }
    }
}

fn read_bounded(
    reader: impl Read,
    limit_bytes: usize,
    codec: &'static str,
) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompression(format!("{codec}: {e}")))?;
    if out.len() > limit_bytes {
        return Err(RecordsError::TooLarge { limit_bytes });
    }
    Ok(out)
}

/// Snappy as Kafka clients send it: xerial framing (Java) or one raw block
/// (librdkafka, Go clients).
fn decompress_snappy(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, RecordsError> {
    let mut out = Vec::new();
    let mut dec = snap::raw::Decoder::new();
    if data.len() >= XERIAL_HEADER_BYTES && data[..XERIAL_MAGIC.len()] == XERIAL_MAGIC {
        let mut pos = XERIAL_HEADER_BYTES;
        while pos < data.len() {
            let Some(len_bytes) = data.get(pos..pos + 4) else {
                return Err(RecordsError::Decompression(format!(
                    "snappy: truncated xerial block length at byte {pos}"
                )));
            };
            let block_len =
                i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            pos += 4;
            let block = usize::try_from(block_len)
                .ok()
                .and_then(|n| data.get(pos..pos.checked_add(n)?))
                .ok_or_else(|| {
                    RecordsError::Decompression(format!(
                        "snappy: xerial block of {block_len} bytes at byte {pos}, {} remain",
                        data.len() - pos
                    ))
                })?;
            pos += block.len();
            snappy_block(&mut dec, block, &mut out, limit_bytes)?;
        }
    } else {
        snappy_block(&mut dec, data, &mut out, limit_bytes)?;
    }
    Ok(out)
}

fn snappy_block(
    dec: &mut snap::raw::Decoder,
    block: &[u8],
    out: &mut Vec<u8>,
    limit_bytes: usize,
) -> Result<(), RecordsError> {
    let claimed = snap::raw::decompress_len(block)
        .map_err(|e| RecordsError::Decompression(format!("snappy: {e}")))?;
    let possible = block
        .len()
        .saturating_mul(SNAPPY_EXPANSION_MAX)
        .saturating_add(SNAPPY_EXPANSION_SLACK_BYTES);
    if claimed > possible {
        return Err(RecordsError::Decompression(format!(
            "snappy: block of {} bytes claims {claimed} bytes decompressed",
            block.len()
        )));
    }
    let start = out.len();
    if claimed > limit_bytes.saturating_sub(start) {
        return Err(RecordsError::TooLarge { limit_bytes });
    }
    out.resize(start + claimed, 0);
    let written = dec
        .decompress(block, &mut out[start..])
        .map_err(|e| RecordsError::Decompression(format!("snappy: {e}")))?;
    if written != claimed {
        return Err(RecordsError::Decompression(format!(
            "snappy: block produced {written} bytes, claimed {claimed}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for c in ALL {
            for len in [0usize, 1, 100, 32 * 1024, 32 * 1024 + 1, 200_000] {
                let data = sample(len);
                let packed = compress(c, &data);
                let back = decompress(c, &packed, 1 << 20).unwrap();
                assert_eq!(back, data, "{c:?} len {len}");
            }
        }
    }

    #[test]
    fn output_limit_is_enforced() {
        let data = vec![0u8; 100_000];
        for c in ALL {
            let packed = compress(c, &data);
            match decompress(c, &packed, 99_999) {
                Err(RecordsError::TooLarge {
                    limit_bytes: 99_999,
                }) => {}
                other => panic!("{c:?}: expected TooLarge, got {other:?}"),
            }
            assert_eq!(decompress(c, &packed, 100_000).unwrap().len(), 100_000);
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let data = sample(50_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            data
        );
    }

    #[test]
    fn xerial_header_and_blocks_have_the_java_layout() {
        let data = sample(40_000);
        let packed = compress(Compression::Snappy, &data);
        assert_eq!(&packed[..8], b"\x82SNAPPY\x00");
        assert_eq!(&packed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let first_len = i32::from_be_bytes(packed[16..20].try_into().unwrap()) as usize;
        let first = snap::raw::Decoder::new()
            .decompress_vec(&packed[20..20 + first_len])
            .unwrap();
        assert_eq!(first, &data[..32 * 1024]);
    }

    #[test]
    fn snappy_lying_about_its_length_is_rejected_without_allocating() {
        // Preamble claims ~2^32 bytes; only 6 bytes present.
        let lie = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &lie, usize::MAX),
            Err(RecordsError::Decompression(_))
        ));
        // Xerial block length larger than the input.
        let mut x = XERIAL_MAGIC.to_vec();
        x.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert!(decompress(Compression::Snappy, &x, 1 << 20).is_err());
        // Negative xerial block length.
        let mut n = XERIAL_MAGIC.to_vec();
        n.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(decompress(Compression::Snappy, &n, 1 << 20).is_err());
    }

    #[test]
    fn garbage_fails_cleanly_for_every_codec() {
        let junk: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for c in ALL.into_iter().skip(1) {
            for n in [0usize, 1, 4, 17, 300] {
                // Must not panic; an error is expected but some prefixes could decode.
                let _ = decompress(c, &junk[..n], 1 << 20);
            }
            assert!(decompress(c, &junk, 1 << 20).is_err(), "{c:?}");
        }
    }
}
