//! DescribeLogDirs: versions 1..=5. Fjord has one log directory, the data
//! directory; every partition lives there, with its size in bytes and its
//! offset lag as the partition states it (0 on the leader; there is never a
//! "future" replica being moved). The
//! directory is never cordoned. kafka-protocol 0.18 stops at v4, so the v5
//! response (v4 plus `is_cordoned` per directory) is encoded here.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use fjord_model::ErrorCode;
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use fjord_protocol::kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::buf::ByteBufMut;
use fjord_protocol::kafka_protocol::protocol::Encodable;

use super::{str_bytes, Ctx};
use crate::state::Broker;

pub const VERSIONS: RangeInclusive<i16> = 1..=5;

/// The first version kafka-protocol 0.18 cannot encode.
const V5: i16 = 5;

/// Kafka's answer for volume sizes it cannot read.
const VOLUME_BYTES_UNKNOWN: i64 = -1;

/// The one log directory, as an absolute path (as Kafka reports `log.dirs`).
pub fn log_dir(broker: &Broker) -> PathBuf {
    let dir = &broker.config.data_dir;
    std::fs::canonicalize(dir).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.clone())
    })
}

/// Total and usable bytes of the file system holding `dir`.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (VOLUME_BYTES_UNKNOWN, VOLUME_BYTES_UNKNOWN);
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to
    // writable memory of the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return (VOLUME_BYTES_UNKNOWN, VOLUME_BYTES_UNKNOWN);
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    let block = st.f_frsize as u128;
    let clamp = |blocks: u128| i64::try_from(blocks * block).unwrap_or(i64::MAX);
    (clamp(st.f_blocks as u128), clamp(st.f_bavail as u128))
}

pub fn handle(ctx: &Ctx, req: DescribeLogDirsRequest) -> Option<BytesMut> {
    let broker = &ctx.broker;
    let describe = |name: &str, wanted: Option<&[i32]>| -> Option<DescribeLogDirsTopic> {
        let topic = broker.topic(name)?;
        let partitions: Vec<_> = topic
            .partitions
            .read()
            .iter()
            .filter(|p| wanted.is_none_or(|w| w.contains(&p.index.0)))
            // Only the partitions with a copy here, as Kafka lists its local
            // replicas: a partition placed on other nodes has no log.
            .filter(|p| !p.log.is_closed())
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index.0)
                    .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(p.log_end_offset_lag())
                    .with_is_future_key(false)
            })
            .collect();
        (!partitions.is_empty()).then(|| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
    };
    // Null asks for every partition; named partitions that do not exist are
    // left out, as Kafka does.
    let topics: Vec<DescribeLogDirsTopic> = match &req.topics {
        None => broker
            .topics()
            .iter()
            .filter_map(|t| describe(&t.name, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|t| describe(&t.topic, Some(&t.partitions)))
            .collect(),
    };
    let dir = log_dir(broker);
    let (total_bytes, usable_bytes) = volume_bytes(&dir);
    let result = DescribeLogDirsResult::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    let resp = DescribeLogDirsResponse::default()
        .with_error_code(ErrorCode::NONE.0)
        .with_results(vec![result]);
    respond(ctx, resp)
}

/// `resp` encoded at the request's version (v5 by [`V5Response`]).
pub fn respond(ctx: &Ctx, resp: DescribeLogDirsResponse) -> Option<BytesMut> {
    if ctx.api_version >= V5 {
        ctx.respond(&V5Response(resp))
    } else {
        ctx.respond(&resp)
    }
}

/// A DescribeLogDirs response in the v5 layout: v4's fields, then
/// `is_cordoned` (false) after `usable_bytes` in each directory. Tagged
/// fields are written empty (Fjord sets none).
#[derive(Debug)]
pub struct V5Response(pub DescribeLogDirsResponse);

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_compact_str(out: &mut BytesMut, s: &str) {
    put_uvarint(out, s.len() as u64 + 1);
    out.put_slice(s.as_bytes());
}

impl V5Response {
    fn to_bytes(&self) -> BytesMut {
        let r = &self.0;
        let mut out = BytesMut::new();
        out.put_i32(r.throttle_time_ms);
        out.put_i16(r.error_code);
        put_uvarint(&mut out, r.results.len() as u64 + 1);
        for d in &r.results {
            out.put_i16(d.error_code);
            put_compact_str(&mut out, &d.log_dir);
            put_uvarint(&mut out, d.topics.len() as u64 + 1);
            for t in &d.topics {
                put_compact_str(&mut out, &t.name);
                put_uvarint(&mut out, t.partitions.len() as u64 + 1);
                for p in &t.partitions {
                    out.put_i32(p.partition_index);
                    out.put_i64(p.partition_size);
                    out.put_i64(p.offset_lag);
                    out.put_u8(u8::from(p.is_future_key));
                    out.put_u8(0);
                }
                out.put_u8(0);
            }
            out.put_i64(d.total_bytes);
            out.put_i64(d.usable_bytes);
            out.put_u8(0); // is_cordoned
            out.put_u8(0);
        }
        out.put_u8(0);
        out
    }
}

impl Encodable for V5Response {
    fn encode<B: ByteBufMut>(&self, buf: &mut B, version: i16) -> anyhow::Result<()> {
        anyhow::ensure!(version == V5, "V5Response encodes only version 5");
        buf.put_slice(&self.to_bytes());
        Ok(())
    }

    fn compute_size(&self, _version: i16) -> anyhow::Result<usize> {
        Ok(self.to_bytes().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v5 is v4 with one byte (`is_cordoned` = false) before each
    /// directory's tagged fields; with one directory, kafka-protocol's v4
    /// bytes with that byte spliced in must equal ours.
    #[test]
    fn v5_is_v4_plus_is_cordoned() {
        let resp = DescribeLogDirsResponse::default()
            .with_throttle_time_ms(7)
            .with_results(vec![DescribeLogDirsResult::default()
                .with_log_dir(str_bytes("/data"))
                .with_total_bytes(1000)
                .with_usable_bytes(600)
                .with_topics(vec![DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes("orders")))
                    .with_partitions(vec![
                        DescribeLogDirsPartition::default()
                            .with_partition_index(0)
                            .with_partition_size(300),
                        DescribeLogDirsPartition::default()
                            .with_partition_index(1)
                            .with_partition_size(5)
                            .with_is_future_key(true),
                    ])])]);
        let mut v4 = BytesMut::new();
        resp.encode(&mut v4, 4).unwrap();
        let n = v4.len();
        let mut want = v4[..n - 2].to_vec();
        want.extend_from_slice(&[0, 0, 0]);
        let v5 = V5Response(resp);
        assert_eq!(&v5.to_bytes()[..], &want[..]);
        assert_eq!(v5.compute_size(5).unwrap(), want.len());
        let mut buf = BytesMut::new();
        assert!(v5.encode(&mut buf, 4).is_err());
    }
}
