//! The `quorum-state` file of a KRaft log directory: Kafka's
//! `QuorumStateData` (version 1) as JSON with a `data_version` field, written
//! atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! It records the epoch this node last knew, who led it and whom the node
//! voted for, so that a restarted voter never votes twice in one epoch
//! (issue 12's quorum relies on it; the one-voter quorum writes itself as
//! leader).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::MetadataError;

pub const QUORUM_STATE_FILE: &str = "quorum-state";
/// The `QuorumStateData` version written (1: no voter set, a voted directory id).
pub const QUORUM_STATE_DATA_VERSION: i32 = 1;
/// Kafka's `Uuid.ZERO_UUID` in its JSON form (URL-safe base64, no padding).
const ZERO_UUID_BASE64: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// The election state persisted by a voter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuorumState {
    /// -1: no known leader.
    pub leader_id: i32,
    /// -1: no epoch yet.
    pub leader_epoch: i32,
    /// -1: no vote cast in this epoch.
    pub voted_id: i32,
    #[serde(default = "zero_uuid")]
    pub voted_directory_id: String,
    #[serde(rename = "data_version")]
    pub data_version: i32,
}

fn zero_uuid() -> String {
    ZERO_UUID_BASE64.to_string()
}

impl QuorumState {
    /// This node leads `epoch` (a one-voter quorum elects itself).
    pub fn leader(node_id: i32, epoch: i32) -> QuorumState {
        QuorumState {
            leader_id: node_id,
            leader_epoch: epoch,
            voted_id: node_id,
            voted_directory_id: zero_uuid(),
            data_version: QUORUM_STATE_DATA_VERSION,
        }
    }

    /// Reads `dir/quorum-state`; `None` if the file does not exist.
    pub fn read(dir: &Path) -> Result<Option<QuorumState>, MetadataError> {
        let path = dir.join(QUORUM_STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| MetadataError::corrupt(&path, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MetadataError::io("read", &path, e)),
        }
    }

    /// Writes `dir/quorum-state` so that a crash leaves the old or the new state whole.
    pub fn write(&self, dir: &Path) -> Result<(), MetadataError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| MetadataError::corrupt(&dir.join(QUORUM_STATE_FILE), e.to_string()))?;
        crate::fsutil::write_atomic(dir, QUORUM_STATE_FILE, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_kafkas_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(QuorumState::read(dir.path()).unwrap(), None);
        let s = QuorumState::leader(1, 3);
        s.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(QUORUM_STATE_FILE)).unwrap();
        assert_eq!(
            text,
            r#"{"leaderId":1,"leaderEpoch":3,"votedId":1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}"#
        );
        assert_eq!(QuorumState::read(dir.path()).unwrap(), Some(s));
        // A file written by Kafka (no vote, unknown leader) reads.
        std::fs::write(
            dir.path().join(QUORUM_STATE_FILE),
            r#"{"leaderId":-1,"leaderEpoch":0,"votedId":-1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}"#,
        )
        .unwrap();
        assert_eq!(
            QuorumState::read(dir.path()).unwrap().unwrap().leader_epoch,
            0
        );
        std::fs::write(dir.path().join(QUORUM_STATE_FILE), b"{").unwrap();
        assert!(QuorumState::read(dir.path()).is_err());
    }
}
