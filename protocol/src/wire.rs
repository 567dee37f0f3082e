//! bincode 2 configuration, and decoding that is always bounded.

use crate::error::{DecodeError, EncodeError};
use serde::{Serialize, de::DeserializeOwned};

/// The bincode configuration of the wire format (varint integers, little endian).
pub fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value`, refusing results over `limit` bytes.
pub fn encode<T: Serialize>(what: &'static str, value: &T, limit: usize) -> Result<Vec<u8>, EncodeError> {
    let bytes = bincode::serde::encode_to_vec(value, config())
        .map_err(|e| EncodeError::Bincode { what, reason: e.to_string() })?;
    if bytes.len() > limit {
        return Err(EncodeError::TooLarge { what, len: bytes.len(), limit });
    }
    Ok(bytes)
}

/// Decodes exactly one `T` from `bytes`, which must not exceed `LIMIT` bytes.
///
/// bincode itself is also held to `LIMIT`, so a length prefix that claims more than the input
/// holds fails before anything is allocated for it.
pub fn decode<T: DeserializeOwned, const LIMIT: usize>(what: &'static str, bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > LIMIT {
        return Err(DecodeError::TooLarge { what, len: bytes.len(), limit: LIMIT });
    }
    let cfg = config().with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, cfg)
        .map_err(|e| DecodeError::Malformed { what, reason: e.to_string() })?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes { what, extra: bytes.len() - used });
    }
    Ok(value)
}
