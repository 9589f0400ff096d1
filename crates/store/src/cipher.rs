//! Encryption at rest of secret values: AES-256-GCM with a random 12-byte nonce per value,
//! stored as `nonce || ciphertext || tag` with `encryption_version = 1`; version 0 rows hold
//! plaintext bytes (older databases) and stay readable.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// `encryption_version` of a plaintext value.
pub const VERSION_PLAINTEXT: i32 = 0;
/// `encryption_version` of an AES-256-GCM value.
pub const VERSION_AES_GCM: i32 = 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 32-byte AES-256 key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Why a `SECRETS_ENCRYPTION_KEY` value is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Valid base64 of the wrong length.
    #[error(
        "SECRETS_ENCRYPTION_KEY decodes to {0} bytes; it must be 32 bytes (base64) or 32 raw characters"
    )]
    WrongLength(usize),
    /// Neither base64 nor 32 raw bytes.
    #[error("SECRETS_ENCRYPTION_KEY must be standard base64 of 32 bytes, or exactly 32 raw bytes")]
    Malformed,
}

impl SecretKey {
    /// Parses a configured key: standard (padded) base64 of exactly 32 bytes first; a value
    /// that is not valid base64 but is 32 bytes long is used as raw bytes. A 32-character value
    /// that *is* valid base64 decodes to 24 bytes and is refused.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        match STANDARD.decode(text.as_bytes()) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(SecretKey)
                .map_err(|_| KeyError::WrongLength(bytes.len())),
            Err(_) => <[u8; 32]>::try_from(text.as_bytes())
                .map(SecretKey)
                .map_err(|_| KeyError::Malformed),
        }
    }

    /// A new random key.
    pub fn generate() -> Result<Self, CipherError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| CipherError::Random)?;
        Ok(SecretKey(bytes))
    }

    /// The key as standard base64 (the form [`SecretKey::parse`] reads), for a key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

/// Why a secret value could not be encrypted or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The value is encrypted and no key is loaded.
    #[error("the value is encrypted and no SECRETS_ENCRYPTION_KEY is loaded")]
    NoKey,
    /// An `encryption_version` this build does not know.
    #[error("unknown encryption_version {0}: platform upgrade required")]
    UnknownVersion(i32),
    /// Authentication failed (wrong key or damaged value), or the blob is too short.
    #[error("decryption failed")]
    Decrypt,
    /// Encryption failed.
    #[error("encryption failed")]
    Encrypt,
    /// The decrypted bytes are not UTF-8.
    #[error("the value is not UTF-8")]
    NotUtf8,
    /// No randomness for a nonce or key.
    #[error("no randomness available")]
    Random,
}

/// A secret value in plain text. Its `Debug` and `Display` never show it;
/// [`Secret::expose`] gives it to the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value, consuming the wrapper.
    pub fn into_exposed(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Seals a value for storage: `(bytes, encryption_version)`. With a key, AES-256-GCM under a
/// fresh random nonce; without one, the plain bytes (version 0).
pub(crate) fn seal(key: Option<&SecretKey>, value: &str) -> Result<(Vec<u8>, i32), CipherError> {
    let Some(key) = key else {
        return Ok((value.as_bytes().to_vec(), VERSION_PLAINTEXT));
    };
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| CipherError::Random)?;
    let sealed = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), value.as_bytes())
        .map_err(|_| CipherError::Encrypt)?;
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    Ok((blob, VERSION_AES_GCM))
}

/// Opens a stored value by its `encryption_version`.
pub(crate) fn open(
    key: Option<&SecretKey>,
    bytes: &[u8],
    version: i32,
) -> Result<Secret, CipherError> {
    let plain = match version {
        VERSION_PLAINTEXT => bytes.to_vec(),
        VERSION_AES_GCM => {
            let key = key.ok_or(CipherError::NoKey)?;
            if bytes.len() < NONCE_LEN + TAG_LEN {
                return Err(CipherError::Decrypt);
            }
            let (nonce, sealed) = bytes.split_at(NONCE_LEN);
            key.cipher()
                .decrypt(Nonce::from_slice(nonce), sealed)
                .map_err(|_| CipherError::Decrypt)?
        }
        other => return Err(CipherError::UnknownVersion(other)),
    };
    String::from_utf8(plain)
        .map(Secret)
        .map_err(|_| CipherError::NotUtf8)
}

/// The prefix of a value sealed into a text field (a channel's config): `ec1:` + base64 of
/// `nonce || ciphertext || tag`.
pub const TEXT_PREFIX: &str = "ec1:";

/// Seals a value into a text field. Without a key, an empty value, or one already sealed
/// (idempotent), the value is kept as it is.
pub(crate) fn seal_text(key: Option<&SecretKey>, value: &str) -> Result<String, CipherError> {
    let Some(key) = key else {
        return Ok(value.to_owned());
    };
    if value.is_empty() || value.starts_with(TEXT_PREFIX) {
        return Ok(value.to_owned());
    }
    let (blob, _) = seal(Some(key), value)?;
    Ok(format!("{TEXT_PREFIX}{}", STANDARD.encode(blob)))
}

/// Opens a text field: a value without the prefix is legacy plaintext and passes through; a
/// sealed one with no key loaded stays as it is; bad base64 or a failed open is an error.
pub(crate) fn open_text(key: Option<&SecretKey>, value: &str) -> Result<String, CipherError> {
    let Some(encoded) = value.strip_prefix(TEXT_PREFIX) else {
        return Ok(value.to_owned());
    };
    if key.is_none() {
        return Ok(value.to_owned());
    }
    let blob = STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| CipherError::Decrypt)?;
    open(key, &blob, VERSION_AES_GCM).map(Secret::into_exposed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_parsing_follows_the_reference() {
        let b64 = STANDARD.encode([7u8; 32]);
        assert_eq!(SecretKey::parse(&b64).unwrap(), SecretKey([7u8; 32]));
        // 32 raw characters that are not base64.
        let raw = "!".repeat(32);
        assert_eq!(SecretKey::parse(&raw).unwrap().0, [b'!'; 32]);
        // 32 characters of valid base64 decode to 24 bytes: refused.
        assert_eq!(
            SecretKey::parse(&"A".repeat(32)),
            Err(KeyError::WrongLength(24))
        );
        assert_eq!(SecretKey::parse("short!"), Err(KeyError::Malformed));
        assert_eq!(SecretKey::parse(""), Err(KeyError::WrongLength(0)));
        let k = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::parse(&k.to_base64()).unwrap(), k);
        assert!(!format!("{k:?}").contains(&k.to_base64()));
    }

    #[test]
    fn text_fields() {
        let key = SecretKey::generate().unwrap();
        let sealed = seal_text(Some(&key), "123:token").unwrap();
        assert!(sealed.starts_with(TEXT_PREFIX));
        assert!(!sealed.contains("123:token"));
        assert_eq!(seal_text(Some(&key), &sealed).unwrap(), sealed);
        assert_eq!(seal_text(Some(&key), "").unwrap(), "");
        assert_eq!(seal_text(None, "plain").unwrap(), "plain");
        assert_eq!(open_text(Some(&key), &sealed).unwrap(), "123:token");
        assert_eq!(open_text(Some(&key), "legacy").unwrap(), "legacy");
        assert_eq!(open_text(None, &sealed).unwrap(), sealed);
        let other = SecretKey::generate().unwrap();
        assert_eq!(open_text(Some(&other), &sealed), Err(CipherError::Decrypt));
        assert_eq!(open_text(Some(&key), "ec1:!!"), Err(CipherError::Decrypt));
    }

    #[test]
    fn seal_and_open() {
        let key = SecretKey::generate().unwrap();
        let (blob, v) = seal(Some(&key), "hunter2").unwrap();
        assert_eq!(v, VERSION_AES_GCM);
        assert_eq!(blob.len(), NONCE_LEN + 7 + TAG_LEN);
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(open(Some(&key), &blob, v).unwrap().expose(), "hunter2");
        // Two seals of one value differ (random nonce).
        assert_ne!(seal(Some(&key), "hunter2").unwrap().0, blob);
        // Wrong key, no key, unknown version, damaged blob.
        let other = SecretKey::generate().unwrap();
        assert_eq!(open(Some(&other), &blob, v), Err(CipherError::Decrypt));
        assert_eq!(open(None, &blob, v), Err(CipherError::NoKey));
        assert_eq!(
            open(Some(&key), &blob, 2),
            Err(CipherError::UnknownVersion(2))
        );
        assert_eq!(open(Some(&key), &blob[..5], v), Err(CipherError::Decrypt));
        // Plaintext rows read as they are, with or without a key.
        let (plain, v0) = seal(None, "old").unwrap();
        assert_eq!(v0, VERSION_PLAINTEXT);
        assert_eq!(open(Some(&key), &plain, v0).unwrap().expose(), "old");
        assert_eq!(
            format!("{:?}", Secret::new("x-value")),
            "Secret(<redacted>)"
        );
    }
}
