//! Asset identity: the BLAKE3 hash of the content, written as 64 lowercase hex characters.

use std::fmt;
use std::str::FromStr;

/// The BLAKE3 hash that names an asset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssetHash([u8; 32]);

/// Why a string or byte slice is not an asset hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("hash must be 64 hex characters, got {0} characters")]
    HexLength(usize),
    #[error("hash must be hex (0-9, a-f)")]
    NotHex,
    #[error("hash must be 32 bytes, got {0}")]
    ByteLength(usize),
}

impl AssetHash {
    pub const fn from_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From raw bytes, as carried in protobuf messages.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| HashError::ByteLength(bytes.len()))
    }

    /// From hex; upper case is accepted and normalised.
    pub fn from_hex(s: &str) -> Result<Self, HashError> {
        if s.len() != 64 {
            return Err(HashError::HexLength(s.chars().count()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| HashError::NotHex)?;
        Ok(Self(out))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<blake3::Hash> for AssetHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl FromStr for AssetHash {
    type Err = HashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl fmt::Display for AssetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for AssetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_errors() {
        let h = AssetHash::from(blake3::hash(b"hello"));
        let s = h.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(AssetHash::from_hex(&s).unwrap(), h);
        assert_eq!(AssetHash::from_hex(&s.to_uppercase()).unwrap(), h);
        assert_eq!(AssetHash::from_hex("abc"), Err(HashError::HexLength(3)));
        assert_eq!(AssetHash::from_hex(&"g".repeat(64)), Err(HashError::NotHex));
        assert_eq!(AssetHash::from_hex(&"é".repeat(32)), Err(HashError::NotHex));
        assert_eq!(
            AssetHash::from_slice(&[1, 2]),
            Err(HashError::ByteLength(2))
        );
    }
}
