//! Secret tokens (admin and agent): generated from the OS's random source, stored only as their
//! BLAKE3 hash. A token has 256 random bits, so an unsalted fast hash is enough: there is
//! nothing to guess from the hash.

use crate::error::StoreError;
use std::fmt::Write;

/// The prefix of every token lanes generates, so a leaked one is recognizable in a scan.
pub const TOKEN_PREFIX: &str = "lanes_";

/// A new random token: [`TOKEN_PREFIX`] and 64 hex digits.
pub fn generate_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Io {
        action: "read random bytes from",
        path: "the operating system".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + 64);
    token.push_str(TOKEN_PREFIX);
    for byte in bytes {
        let _ = write!(token, "{byte:02x}");
    }
    Ok(token)
}

/// The hash stored for `token`.
pub fn hash_token(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}
