//! Memory of the controller's state per 100,000 partitions (issue 12,
//! Performance): the active controller's image and sessions after three
//! brokers registered and topics with 100,000 partitions of replication
//! factor 3 were created through `Controller::create_topics`, measured as
//! the live heap bytes a counting allocator sees (allocated minus freed),
//! plus the size of the metadata records that describe them (what a
//! snapshot of `__cluster_metadata` holds).
//!
//!     cargo run --release -p fjord-controller --example controller_memory [PARTITIONS]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::BytesMut;
use fjord_controller::{
    BrokerHeartbeat, BrokerRegistration, Controller, ControllerConfig, FeatureRange, Listener,
    NewTopic,
};
use fjord_metadata::{MetadataDelta, MetadataImage};
use fjord_model::{NodeId, Offset};
use fjord_protocol::metadata_records::{FeatureLevelRecord, MetadataRecord};
use uuid::Uuid;

struct Counting;
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const METADATA_VERSION: i16 = 27;
const PARTITIONS_PER_TOPIC: i32 = 1_000;

fn main() {
    let partitions: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut d = MetadataDelta::new(&MetadataImage::empty("memory"));
    d.replay(&MetadataRecord::FeatureLevel(FeatureLevelRecord {
        name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
        feature_level: METADATA_VERSION,
        ..Default::default()
    }))
    .expect("the feature level applies");
    d.set_end_offset(Offset(1));
    let mut c = Controller::activate(ControllerConfig::default(), d.apply(), 0);
    let mut epochs = Vec::new();
    for id in 1..=3 {
        let reg = BrokerRegistration {
            broker_id: NodeId(id),
            cluster_id: "memory".into(),
            incarnation_id: Uuid::from_u128(id as u128),
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
            features: vec![FeatureRange {
                name: fjord_metadata::image::METADATA_VERSION_FEATURE.into(),
                min: 1,
                max: METADATA_VERSION,
            }],
            log_dirs: Vec::new(),
            previous_broker_epoch: -1,
        };
        epochs.push(c.register_broker(0, &reg).expect("registers").response);
    }
    let end = c.image().end_offset().0;
    for (i, epoch) in epochs.iter().enumerate() {
        let hb = BrokerHeartbeat {
            broker_id: NodeId(i as i32 + 1),
            broker_epoch: *epoch,
            current_metadata_offset: end,
            want_fence: false,
            want_shut_down: false,
        };
        assert!(!c.heartbeat(0, &hb).expect("heartbeat").response.is_fenced);
    }
    let mut record_bytes = 0usize;
    let mut created = 0;
    let mut n = 0;
    while created < partitions {
        let count = PARTITIONS_PER_TOPIC.min(partitions - created);
        let topic = NewTopic {
            name: format!("topic-{n:05}"),
            num_partitions: count,
            replication_factor: 3,
            assignments: Vec::new(),
            configs: Default::default(),
        };
        let r = c.create_topics(std::slice::from_ref(&topic), 1, 3, false);
        for res in &r.response {
            assert!(res.is_ok(), "{res:?}");
        }
        let mut buf = BytesMut::new();
        for rec in &r.records {
            buf.clear();
            rec.encode(rec.version(), &mut buf);
            record_bytes += buf.len();
        }
        drop(r);
        created += count;
        n += 1;
    }
    assert_eq!(created, partitions);
    let live = LIVE_BYTES.load(Ordering::Relaxed) - before;
    println!(
        "{created} partitions (replication factor 3, {n} topics, 3 brokers): controller state {:.1} MiB \
         live heap, {:.0} bytes per partition; their metadata records {:.1} MiB",
        live as f64 / (1 << 20) as f64,
        live as f64 / created as f64,
        record_bytes as f64 / (1 << 20) as f64,
    );
    drop(c);
}
