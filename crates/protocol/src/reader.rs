//! A bounds-checked cursor over an untrusted request body.
//!
//! Every read checks the bytes remaining first and fails with a
//! [`DecodeError`] naming the field; nothing here panics on input. Array
//! counts are checked against the bytes remaining *before* anything is
//! allocated for them (`count * min_elem_bytes <= remaining`), so a tiny
//! frame can never make us reserve gigabytes.
//!
//! The reader owns a [`Bytes`], so byte and string fields are cheap
//! reference-counted slices of the frame (a Produce's records are never
//! copied).

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Why a request could not be decoded. Every variant names the field that was
/// being read when decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{field}: needs {needed} bytes, only {available} remain")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{field}: array of {count} elements (at least {min_elem_bytes} bytes each) cannot fit in the {available} bytes remaining")]
    ArrayTooLong {
        field: &'static str,
        count: u64,
        min_elem_bytes: usize,
        available: usize,
    },
    #[error(
        "{field}: {tagged_fields} tagged fields cannot fit in the {available} bytes remaining"
    )]
    TooManyTaggedFields {
        field: &'static str,
        tagged_fields: u64,
        available: usize,
    },
    #[error("{field}: invalid length {length}")]
    InvalidLength { field: &'static str, length: i64 },
    #[error("{field}: null where the field is not nullable")]
    UnexpectedNull { field: &'static str },
    #[error("{field}: string is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field}: variable-length integer is too long")]
    VarintTooLong { field: &'static str },
    #[error("{field}: tagged field {tag} is out of order or repeated (previous tag {previous})")]
    TaggedFieldOrder {
        field: &'static str,
        tag: u32,
        previous: u32,
    },
    #[error("{field}: tagged field {tag} declared {declared} bytes but its value used {used}")]
    TaggedFieldSize {
        field: &'static str,
        tag: u32,
        declared: usize,
        used: usize,
    },
    #[error("{field}: tag {tag} does not fit an i32")]
    TagTooLarge { field: &'static str, tag: u32 },
    #[error("{field}: the decoded request would exceed its {budget_bytes}-byte memory budget")]
    DecodedTooLarge {
        field: &'static str,
        budget_bytes: usize,
    },
    #[error("unsupported api key {api_key}")]
    UnsupportedApi { api_key: i16 },
    #[error("unsupported version {api_version} of api key {api_key} (supported {min}..={max})")]
    UnsupportedVersion {
        api_key: i16,
        api_version: i16,
        min: i16,
        max: i16,
    },
    #[error("{field}: unsupported frame version {version}")]
    UnsupportedFrameVersion { field: &'static str, version: u32 },
    #[error("{trailing} bytes left over after the {what}")]
    TrailingBytes { what: &'static str, trailing: usize },
}

/// Bytes each tagged field takes at least: a one-byte tag and a one-byte size.
const TAGGED_FIELD_BYTES_MIN: usize = 2;

/// Heap bytes one unknown tagged field costs in the decoded map (entry plus
/// a share of its B-tree node), a rough upper bound.
const TAGGED_FIELD_DECODED_BYTES: usize = 64;

/// Bounds-checked reader over a request body (or a whole request).
///
/// Besides checking every read, it keeps a budget of heap bytes the decoded
/// request may take (arrays of structs, unknown tagged fields), by default
/// [`REQUEST_DECODED_BYTES_MAX`](fjord_model::limits::REQUEST_DECODED_BYTES_MAX).
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    budget_bytes: usize,
    budget_bytes_max: usize,
}

macro_rules! fixed_reads {
    ($($name:ident: $t:ty = $get:ident;)*) => {
        $(
            #[doc = concat!("Reads a big-endian `", stringify!($t), "`.")]
            pub fn $name(&mut self, field: &'static str) -> Result<$t, DecodeError> {
                self.need(field, std::mem::size_of::<$t>())?;
                Ok(self.buf.$get())
            }
        )*
    };
}

impl Reader {
    /// A reader with the default decoded-memory budget.
    pub fn new(buf: Bytes) -> Self {
        Self::with_budget(buf, fjord_model::limits::REQUEST_DECODED_BYTES_MAX)
    }

    /// A reader whose decoded request may take at most `budget_bytes` of heap.
    pub fn with_budget(buf: Bytes, budget_bytes: usize) -> Self {
        Reader {
            buf,
            budget_bytes,
            budget_bytes_max: budget_bytes,
        }
    }

    /// Decoded-memory budget left.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Takes `bytes` from the decoded-memory budget.
    pub fn charge(&mut self, field: &'static str, bytes: usize) -> Result<(), DecodeError> {
        match self.budget_bytes.checked_sub(bytes) {
            Some(left) => {
                self.budget_bytes = left;
                Ok(())
            }
            None => Err(DecodeError::DecodedTooLarge {
                field,
                budget_bytes: self.budget_bytes_max,
            }),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not read yet, without consuming them.
    pub fn peek(&self) -> &[u8] {
        &self.buf
    }

    /// Consumes the reader, returning the bytes not read yet.
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                trailing: self.buf.len(),
            })
        }
    }

    fn need(&self, field: &'static str, needed: usize) -> Result<(), DecodeError> {
        if needed > self.buf.len() {
            return Err(DecodeError::Truncated {
                field,
                needed,
                available: self.buf.len(),
            });
        }
        Ok(())
    }

    fixed_reads! {
        i8: i8 = get_i8;
        i16: i16 = get_i16;
        i32: i32 = get_i32;
        i64: i64 = get_i64;
        u8: u8 = get_u8;
        u16: u16 = get_u16;
        u32: u32 = get_u32;
        f64: f64 = get_f64;
    }

    /// A boolean: any non-zero byte is true (as Kafka reads it).
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(field)? != 0)
    }

    pub fn uuid(&mut self, field: &'static str) -> Result<Uuid, DecodeError> {
        self.need(field, 16)?;
        let mut raw = [0u8; 16];
        self.buf.copy_to_slice(&mut raw);
        Ok(Uuid::from_bytes(raw))
    }

    /// `n` raw bytes as a zero-copy slice.
    pub fn raw(&mut self, field: &'static str, n: usize) -> Result<Bytes, DecodeError> {
        self.need(field, n)?;
        Ok(self.buf.split_to(n))
    }

    /// Unsigned LEB128 varint of at most 5 bytes that fits a u32.
    pub fn uvarint(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let v = self.uvarlong_bounded(field, 5)?;
        u32::try_from(v).map_err(|_| DecodeError::VarintTooLong { field })
    }

    /// Unsigned LEB128 varint of at most 10 bytes that fits a u64.
    pub fn uvarlong(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.uvarlong_bounded(field, 10)
    }

    fn uvarlong_bounded(
        &mut self,
        field: &'static str,
        max_bytes: usize,
    ) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let byte = self.u8(field)?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * i as u32;
            // The 10th byte of a u64 may only carry the top bit.
            if shift == 63 && bits > 1 {
                return Err(DecodeError::VarintTooLong { field });
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintTooLong { field })
    }

    /// Zigzag-encoded signed varint (i32).
    pub fn varint(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        let v = self.uvarint(field)?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    /// Zigzag-encoded signed varlong (i64).
    pub fn varlong(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        let v = self.uvarlong(field)?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    // ---- lengths ----

    /// Classic i16 string length; `None` for -1, error for other negatives.
    fn classic_str_len(&mut self, field: &'static str) -> Result<Option<usize>, DecodeError> {
        let len = self.i16(field)?;
        match len {
            -1 => Ok(None),
            l if l < 0 => Err(DecodeError::InvalidLength {
                field,
                length: i64::from(l),
            }),
            l => Ok(Some(l as usize)),
        }
    }

    /// Classic i32 bytes/array length; `None` for -1, error for other negatives.
    fn classic_i32_len(&mut self, field: &'static str) -> Result<Option<usize>, DecodeError> {
        let len = self.i32(field)?;
        match len {
            -1 => Ok(None),
            l if l < 0 => Err(DecodeError::InvalidLength {
                field,
                length: i64::from(l),
            }),
            l => Ok(Some(l as usize)),
        }
    }

    /// Compact length: uvarint N, where 0 is null and N-1 is the length.
    fn compact_len(&mut self, field: &'static str) -> Result<Option<usize>, DecodeError> {
        let n = self.uvarint(field)?;
        Ok(n.checked_sub(1).map(|l| l as usize))
    }

    fn check_count(
        &self,
        field: &'static str,
        count: usize,
        min_elem_bytes: usize,
    ) -> Result<(), DecodeError> {
        let min_total = count.checked_mul(min_elem_bytes.max(1));
        match min_total {
            Some(t) if t <= self.buf.len() => Ok(()),
            _ => Err(DecodeError::ArrayTooLong {
                field,
                count: count as u64,
                min_elem_bytes,
                available: self.buf.len(),
            }),
        }
    }

    /// Classic array length (i32, -1 = null). Fails before any allocation if
    /// `count * min_elem_bytes` exceeds the bytes remaining. `min_elem_bytes`
    /// must be a lower bound of an element's encoded size (at least 1 is used).
    pub fn array_len(
        &mut self,
        field: &'static str,
        min_elem_bytes: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let len = self.classic_i32_len(field)?;
        if let Some(n) = len {
            self.check_count(field, n, min_elem_bytes)?;
        }
        Ok(len)
    }

    /// Compact array length (uvarint N+1, 0 = null), with the same bound as
    /// [`Reader::array_len`].
    pub fn compact_array_len(
        &mut self,
        field: &'static str,
        min_elem_bytes: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let len = self.compact_len(field)?;
        if let Some(n) = len {
            self.check_count(field, n, min_elem_bytes)?;
        }
        Ok(len)
    }

    // ---- strings ----

    fn utf8(&mut self, field: &'static str, len: usize) -> Result<StrBytes, DecodeError> {
        let raw = self.raw(field, len)?;
        // Strings are copied out of the frame: a slice would keep the whole request
        // buffer (a Produce frame can be a megabyte) alive for as long as a name lives,
        // e.g. in an acks=all answer waiting for fdatasync.
        StrBytes::from_utf8(Bytes::copy_from_slice(&raw))
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// Classic nullable string (i16 length, -1 = null).
    pub fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<StrBytes>, DecodeError> {
        match self.classic_str_len(field)? {
            None => Ok(None),
            Some(len) => self.utf8(field, len).map(Some),
        }
    }

    /// Classic non-nullable string.
    pub fn string(&mut self, field: &'static str) -> Result<StrBytes, DecodeError> {
        self.nullable_string(field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// Compact nullable string (uvarint length+1, 0 = null).
    pub fn compact_nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<StrBytes>, DecodeError> {
        match self.compact_len(field)? {
            None => Ok(None),
            Some(len) => self.utf8(field, len).map(Some),
        }
    }

    /// Compact non-nullable string.
    pub fn compact_string(&mut self, field: &'static str) -> Result<StrBytes, DecodeError> {
        self.compact_nullable_string(field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    // ---- bytes ----

    /// Classic nullable bytes (i32 length, -1 = null), zero-copy.
    pub fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, DecodeError> {
        match self.classic_i32_len(field)? {
            None => Ok(None),
            Some(len) => self.raw(field, len).map(Some),
        }
    }

    /// Classic non-nullable bytes.
    pub fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        self.nullable_bytes(field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// Compact nullable bytes (uvarint length+1, 0 = null), zero-copy.
    pub fn compact_nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.compact_len(field)? {
            None => Ok(None),
            Some(len) => self.raw(field, len).map(Some),
        }
    }

    /// Compact non-nullable bytes.
    pub fn compact_bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        self.compact_nullable_bytes(field)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    // ---- version-dependent helpers (flexible = compact encodings) ----

    /// Non-nullable string, compact when `flexible`.
    pub fn str_v(&mut self, field: &'static str, flexible: bool) -> Result<StrBytes, DecodeError> {
        if flexible {
            self.compact_string(field)
        } else {
            self.string(field)
        }
    }

    /// Nullable string, compact when `flexible`.
    pub fn nullable_str_v(
        &mut self,
        field: &'static str,
        flexible: bool,
    ) -> Result<Option<StrBytes>, DecodeError> {
        if flexible {
            self.compact_nullable_string(field)
        } else {
            self.nullable_string(field)
        }
    }

    /// Non-nullable string as an owned `String`, compact when `flexible`.
    pub fn string_v(&mut self, field: &'static str, flexible: bool) -> Result<String, DecodeError> {
        self.nullable_string_v(field, flexible)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// Nullable string as an owned `String`, compact when `flexible`.
    pub fn nullable_string_v(
        &mut self,
        field: &'static str,
        flexible: bool,
    ) -> Result<Option<String>, DecodeError> {
        let len = if flexible {
            self.compact_len(field)?
        } else {
            self.classic_str_len(field)?
        };
        let Some(len) = len else { return Ok(None) };
        let raw = self.raw(field, len)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// Non-nullable bytes, compact when `flexible`.
    pub fn bytes_v(&mut self, field: &'static str, flexible: bool) -> Result<Bytes, DecodeError> {
        if flexible {
            self.compact_bytes(field)
        } else {
            self.bytes(field)
        }
    }

    /// Nullable bytes, compact when `flexible`.
    pub fn nullable_bytes_v(
        &mut self,
        field: &'static str,
        flexible: bool,
    ) -> Result<Option<Bytes>, DecodeError> {
        if flexible {
            self.compact_nullable_bytes(field)
        } else {
            self.nullable_bytes(field)
        }
    }

    /// Nullable array decoded element by element with `elem`; compact when
    /// `flexible`. The count is bounded by the bytes remaining before the
    /// vector is allocated.
    pub fn nullable_array_v<T>(
        &mut self,
        field: &'static str,
        flexible: bool,
        min_elem_bytes: usize,
        mut elem: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let len = if flexible {
            self.compact_array_len(field, min_elem_bytes)?
        } else {
            self.array_len(field, min_elem_bytes)?
        };
        let Some(n) = len else { return Ok(None) };
        self.charge(field, n.saturating_mul(std::mem::size_of::<T>()))?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(elem(self)?);
        }
        Ok(Some(out))
    }

    /// Non-nullable array; see [`Reader::nullable_array_v`].
    pub fn array_v<T>(
        &mut self,
        field: &'static str,
        flexible: bool,
        min_elem_bytes: usize,
        elem: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.nullable_array_v(field, flexible, min_elem_bytes, elem)?
            .ok_or(DecodeError::UnexpectedNull { field })
    }

    /// A nullable struct: a marker byte, negative for null (Kafka writes -1
    /// and 1 and reads any non-negative marker as present), then the struct
    /// read by `read`.
    pub fn nullable_struct<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.i8(field)? < 0 {
            Ok(None)
        } else {
            read(self).map(Some)
        }
    }

    // ---- tagged fields ----

    /// Reads a tagged-field section. `known(tag, value_reader)` is offered
    /// each field first: it returns `Ok(true)` when it decoded the tag (and
    /// must consume exactly the declared value bytes), `Ok(false)` to keep the
    /// field in the returned map of unknown tags. Tags must be strictly
    /// increasing, as Kafka requires.
    pub fn tagged_fields(
        &mut self,
        field: &'static str,
        mut known: impl FnMut(u32, &mut Reader) -> Result<bool, DecodeError>,
    ) -> Result<BTreeMap<i32, Bytes>, DecodeError> {
        let count = self.uvarint(field)?;
        let fits = (count as usize)
            .checked_mul(TAGGED_FIELD_BYTES_MIN)
            .is_some_and(|t| t <= self.buf.len());
        if !fits {
            return Err(DecodeError::TooManyTaggedFields {
                field,
                tagged_fields: u64::from(count),
                available: self.buf.len(),
            });
        }
        let mut unknown = BTreeMap::new();
        let mut previous: Option<u32> = None;
        for _ in 0..count {
            let tag = self.uvarint(field)?;
            if let Some(p) = previous {
                if tag <= p {
                    return Err(DecodeError::TaggedFieldOrder {
                        field,
                        tag,
                        previous: p,
                    });
                }
            }
            previous = Some(tag);
            let size = self.uvarint(field)? as usize;
            let value = self.raw(field, size)?;
            let mut sub = Reader {
                buf: value.clone(),
                budget_bytes: self.budget_bytes,
                budget_bytes_max: self.budget_bytes_max,
            };
            let is_known = known(tag, &mut sub)?;
            self.budget_bytes = sub.budget_bytes;
            if is_known {
                if !sub.is_empty() {
                    return Err(DecodeError::TaggedFieldSize {
                        field,
                        tag,
                        declared: size,
                        used: size - sub.remaining(),
                    });
                }
            } else {
                self.charge(field, TAGGED_FIELD_DECODED_BYTES)?;
                let key =
                    i32::try_from(tag).map_err(|_| DecodeError::TagTooLarge { field, tag })?;
                unknown.insert(key, value);
            }
        }
        Ok(unknown)
    }

    /// A tagged-field section where no tag is known to us; all are kept.
    pub fn unknown_tagged_fields(
        &mut self,
        field: &'static str,
    ) -> Result<BTreeMap<i32, Bytes>, DecodeError> {
        self.tagged_fields(field, |_, _| Ok(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader {
        Reader::new(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn fixed_width_reads_are_big_endian_and_checked() {
        let mut r = reader(&[0x01, 0x02, 0xff, 0xff, 0xff, 0xfe, 7]);
        assert_eq!(r.i16("a"), Ok(0x0102));
        assert_eq!(r.i32("b"), Ok(-2));
        assert_eq!(
            r.i64("c"),
            Err(DecodeError::Truncated {
                field: "c",
                needed: 8,
                available: 1
            })
        );
        assert_eq!(r.bool("d"), Ok(true));
        assert!(r.is_empty());
        assert_eq!(r.finish("x"), Ok(()));
        let mut r = reader(&[0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]);
        assert_eq!(r.f64("pi"), Ok(std::f64::consts::PI));
    }

    #[test]
    fn varints() {
        let mut r = reader(&[0x00, 0x7f, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.uvarint("a"), Ok(0));
        assert_eq!(r.uvarint("b"), Ok(127));
        assert_eq!(r.uvarint("c"), Ok(128));
        assert_eq!(r.uvarint("d"), Ok(u32::MAX));
        // zigzag: 0 -> 0, 1 -> -1, 2 -> 1, 3 -> -2
        let mut r = reader(&[0, 1, 2, 3, 0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.varint("a"), Ok(0));
        assert_eq!(r.varint("b"), Ok(-1));
        assert_eq!(r.varint("c"), Ok(1));
        assert_eq!(r.varint("d"), Ok(-2));
        assert_eq!(r.varint("e"), Ok(i32::MAX));
        let mut max = vec![0xfe];
        max.extend_from_slice(&[0xff; 8]);
        max.push(0x01);
        let mut r = reader(&max);
        assert_eq!(r.varlong("l"), Ok(i64::MAX));
        let mut too_long = vec![0xff; 10];
        too_long.push(0x01);
        let mut r = reader(&too_long);
        assert_eq!(
            r.varlong("l"),
            Err(DecodeError::VarintTooLong { field: "l" })
        );
        let mut r = reader(&[0x80, 0x80]);
        assert!(matches!(
            r.uvarint("t"),
            Err(DecodeError::Truncated { field: "t", .. })
        ));
    }

    #[test]
    fn strings_and_bytes() {
        let mut r = reader(&[0, 2, b'h', b'i', 0xff, 0xff, 3, b'y', b'o', 0]);
        assert_eq!(r.string("s").map(|s| s.to_string()), Ok("hi".to_owned()));
        assert_eq!(r.nullable_string("n"), Ok(None));
        assert_eq!(
            r.compact_string("c").map(|s| s.to_string()),
            Ok("yo".to_owned())
        );
        assert_eq!(
            r.compact_string("z"),
            Err(DecodeError::UnexpectedNull { field: "z" })
        );
        let mut r = reader(&[0, 0, 0, 3, 1, 2, 3, 0xff, 0xff, 0xff, 0xff, 1, 0]);
        assert_eq!(r.bytes("b"), Ok(Bytes::from_static(&[1, 2, 3])));
        assert_eq!(r.nullable_bytes("n"), Ok(None));
        assert_eq!(r.compact_bytes("e"), Ok(Bytes::new()));
        assert_eq!(r.compact_nullable_bytes("n2"), Ok(None));
        let mut r = reader(&[0, 5, b'a']);
        assert_eq!(
            r.string("short"),
            Err(DecodeError::Truncated {
                field: "short",
                needed: 5,
                available: 1
            })
        );
    }

    #[test]
    fn byte_fields_are_zero_copy_slices() {
        let frame = Bytes::from(vec![0, 0, 0, 4, 9, 9, 9, 9]);
        let base = frame.as_ptr() as usize;
        let mut r = Reader::new(frame);
        let b = r.bytes("records").expect("bytes");
        assert_eq!(b.as_ptr() as usize, base + 4);
    }

    #[test]
    fn array_counts_are_bounded_by_remaining_bytes() {
        let mut r = reader(&[0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(r.array_len("a", 4), Ok(Some(2)));
        let mut r = reader(&[0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            r.array_len("a", 4),
            Err(DecodeError::ArrayTooLong {
                field: "a",
                count: 3,
                min_elem_bytes: 4,
                available: 8
            })
        );
        let mut r = reader(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.array_len("n", 1), Ok(None));
        let mut r = reader(&[0, 3, 0, 0]);
        assert_eq!(r.compact_array_len("c", 1), Ok(None));
        assert_eq!(r.compact_array_len("c", 1), Ok(Some(2)));
        // min_elem_bytes of 0 is treated as 1.
        let mut r = reader(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(r.array_len("z", 0).is_err());
    }

    #[test]
    fn tagged_fields_keep_unknown_and_offer_known() {
        // 3 fields: tag 0 (known, i16), tag 4 (unknown, 1 byte), tag 300 (2-byte tag)
        let mut r = reader(&[3, 0, 2, 0, 9, 4, 1, 0xaa, 0xac, 0x02, 0]);
        let mut seen = None;
        let unknown = r
            .tagged_fields("t", |tag, sub| {
                if tag == 0 {
                    seen = Some(sub.i16("known")?);
                    return Ok(true);
                }
                Ok(false)
            })
            .expect("tags");
        assert_eq!(seen, Some(9));
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[&4], Bytes::from_static(&[0xaa]));
        assert_eq!(unknown[&300], Bytes::new());
        assert!(r.is_empty());
        // Known tag that does not use all its bytes.
        let mut r = reader(&[1, 0, 3, 0, 9, 0]);
        assert!(matches!(
            r.tagged_fields("t", |_, sub| sub.i16("k").map(|_| true)),
            Err(DecodeError::TaggedFieldSize {
                declared: 3,
                used: 2,
                ..
            })
        ));
        // Tag beyond i32.
        let mut r = reader(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]);
        assert!(matches!(
            r.unknown_tagged_fields("t"),
            Err(DecodeError::TagTooLarge { .. })
        ));
    }

    #[test]
    fn decoded_memory_budget_is_enforced() {
        // Three u64 elements need 24 bytes of budget.
        let body = [
            0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,
        ];
        let mut r = Reader::with_budget(Bytes::copy_from_slice(&body), 23);
        assert_eq!(
            r.array_v("a", false, 8, |r| r.i64("a")),
            Err(DecodeError::DecodedTooLarge {
                field: "a",
                budget_bytes: 23
            })
        );
        let mut r = Reader::with_budget(Bytes::copy_from_slice(&body), 24);
        assert_eq!(r.array_v("a", false, 8, |r| r.i64("a")), Ok(vec![1, 2, 3]));
        assert_eq!(r.budget_bytes(), 0);
        // Unknown tagged fields are charged too.
        let mut r = Reader::with_budget(Bytes::from_static(&[2, 1, 0, 2, 0]), 100);
        assert!(matches!(
            r.unknown_tagged_fields("t"),
            Err(DecodeError::DecodedTooLarge { .. })
        ));
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let r = reader(&[1, 2]);
        assert_eq!(
            r.finish("body"),
            Err(DecodeError::TrailingBytes {
                what: "body",
                trailing: 2
            })
        );
    }
}
