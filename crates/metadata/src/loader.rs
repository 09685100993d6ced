//! The bridge from committed records to images (Kafka's `MetadataLoader`):
//! a [`MetadataListener`] that decodes each committed batch into a
//! [`MetadataDelta`], applies it, publishes the new image, and hands
//! (delta, image) to a [`MetadataPublisher`] — the broker, which opens or
//! removes partition logs for what the delta changed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fjord_model::Offset;
use parking_lot::RwLock;

use crate::delta::MetadataDelta;
use crate::image::MetadataImage;
use crate::log::Snapshot;
use crate::quorum::{CommittedBatch, MetadataListener};
use crate::MetadataError;

/// Acts on each new image (called on the quorum's apply thread, in order).
pub trait MetadataPublisher: Send {
    fn publish(
        &mut self,
        delta: &MetadataDelta,
        image: &MetadataImage,
    ) -> Result<(), MetadataError>;
}

/// The latest image, readable from any thread.
#[derive(Clone)]
pub struct ImageHandle(Arc<RwLock<MetadataImage>>);

impl ImageHandle {
    pub fn new(image: MetadataImage) -> ImageHandle {
        ImageHandle(Arc::new(RwLock::new(image)))
    }
    /// The newest published image (cheap: an `Arc` clone).
    pub fn current(&self) -> MetadataImage {
        self.0.read().clone()
    }
    fn set(&self, image: MetadataImage) {
        let mut slot = self.0.write();
        assert!(
            image.end_offset() >= slot.end_offset(),
            "a published image never goes back"
        );
        *slot = image;
    }
}

/// Applies committed metadata to the image and publishes it.
pub struct MetadataLoader {
    image: MetadataImage,
    handle: ImageHandle,
    publisher: Box<dyn MetadataPublisher>,
}

impl MetadataLoader {
    pub fn new(
        cluster_id: &str,
        publisher: Box<dyn MetadataPublisher>,
    ) -> (MetadataLoader, ImageHandle) {
        let image = MetadataImage::empty(cluster_id);
        let handle = ImageHandle::new(image.clone());
        (
            MetadataLoader {
                image,
                handle: handle.clone(),
                publisher,
            },
            handle,
        )
    }

    fn publish(&mut self, delta: MetadataDelta) -> Result<(), MetadataError> {
        let image = delta.apply();
        self.image = image.clone();
        self.handle.set(image.clone());
        self.publisher.publish(&delta, &image)
    }
}

impl MetadataListener for MetadataLoader {
    fn handle_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MetadataError> {
        if !self.image.topics().is_empty() || self.image.end_offset() > Offset(0) {
            return Err(MetadataError::Apply(
                "a snapshot can only be loaded into an empty image".into(),
            ));
        }
        let mut delta = MetadataDelta::new(&self.image);
        for r in &snapshot.records {
            delta.replay_framed(r)?;
        }
        delta.set_end_offset(snapshot.id.end_offset);
        self.publish(delta)
    }

    fn handle_commit(&mut self, batch: &CommittedBatch) -> Result<(), MetadataError> {
        let mut delta = MetadataDelta::new(&self.image);
        // A batch is applied whole or not at all (a proposal is atomic).
        for r in &batch.records {
            delta.replay_framed(r)?;
        }
        delta.set_end_offset(batch.last_offset.next());
        self.publish(delta)
    }

    fn snapshot_records(&self) -> Vec<Bytes> {
        let records = self.image.to_records();
        match self.image.metadata_version() {
            Some(level) => frame_records_for(&records, level),
            None => frame_records(&records),
        }
    }
}

/// Encodes records as framed record values at the newest version of each
/// record's schema.
pub fn frame_records(records: &[fjord_protocol::metadata_records::MetadataRecord]) -> Vec<Bytes> {
    records
        .iter()
        .map(|r| {
            let mut buf = BytesMut::new();
            r.encode_framed(&mut buf);
            buf.freeze()
        })
        .collect()
}

/// Encodes records as framed record values, ready to propose, at the
/// versions Kafka writes in a cluster at `metadata_version`
/// (`MetadataRecord::version_at`).
pub fn frame_records_for(
    records: &[fjord_protocol::metadata_records::MetadataRecord],
    metadata_version: i16,
) -> Vec<Bytes> {
    records
        .iter()
        .map(|r| {
            let mut buf = BytesMut::new();
            r.encode_framed_for(metadata_version, &mut buf);
            buf.freeze()
        })
        .collect()
}
