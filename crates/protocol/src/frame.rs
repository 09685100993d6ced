//! Framing: the 4-byte big-endian size prefix and response encoding.

use bytes::{BufMut, BytesMut};
use kafka_protocol::protocol::Encodable;

/// A size prefix we refuse before allocating anything for the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame size {size}")]
    Negative { size: i32 },
    #[error("frame of {size} bytes exceeds the {max_bytes}-byte limit")]
    TooLarge { size: usize, max_bytes: usize },
}

/// Failure to encode a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("encoding response body (version {version}): {message}")]
    Body { version: i16, message: String },
    #[error("unknown response header version {header_version}")]
    HeaderVersion { header_version: i16 },
    #[error("response of {size} bytes does not fit a frame")]
    TooLarge { size: usize },
}

/// Length of the frame that follows a size prefix, checked against `max`
/// (use `fjord_model::limits::FRAME_BYTES_MAX`) before the caller allocates.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes(prefix);
    let Ok(len) = usize::try_from(size) else {
        return Err(FrameError::Negative { size });
    };
    if len > max {
        return Err(FrameError::TooLarge {
            size: len,
            max_bytes: max,
        });
    }
    Ok(len)
}

/// Appends one response frame to `out`: size prefix, response header
/// (v0: correlation id; v1: correlation id + empty tagged fields) and `body`
/// encoded at `body_version`. On error `out` is left as it was.
pub fn encode_response<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    body_version: i16,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !(0..=1).contains(&header_version) {
        return Err(EncodeError::HeaderVersion { header_version });
    }
    let start = out.len();
    out.put_i32(0); // patched below
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields
    }
    if let Err(e) = body.encode(out, body_version) {
        out.truncate(start);
        return Err(EncodeError::Body {
            version: body_version,
            message: e.to_string(),
        });
    }
    let size = out.len() - start - 4;
    let Ok(size_i32) = i32::try_from(size) else {
        out.truncate(start);
        return Err(EncodeError::TooLarge { size });
    };
    out[start..start + 4].copy_from_slice(&size_i32.to_be_bytes());
    Ok(())
}
