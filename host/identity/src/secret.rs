//! Client secrets: agents authenticate to the token endpoint with the secret the server stores
//! as a sha256 hex digest (`host/server/src/agents.rs`).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `presented` hashes to `stored_hash_hex`, compared in constant time so the time taken
/// tells an attacker nothing about how much of a guess was right. A malformed stored hash never matches.
pub fn client_secret_matches(stored_hash_hex: &str, presented: &str) -> bool {
    let Ok(stored) = hex::decode(stored_hash_hex.trim()) else {
        return false;
    };
    if stored.len() != 32 {
        return false;
    }
    let digest = Sha256::digest(presented.as_bytes());
    bool::from(digest.as_slice().ct_eq(&stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_right_secret() {
        let stored = hex::encode(Sha256::digest(b"alk_right"));
        assert!(client_secret_matches(&stored, "alk_right"));
        assert!(client_secret_matches(&stored.to_uppercase(), "alk_right"));
        assert!(!client_secret_matches(&stored, "alk_wrong"));
        assert!(!client_secret_matches(&stored, ""));
        assert!(!client_secret_matches("not hex", "alk_right"));
        assert!(!client_secret_matches(&stored[..62], "alk_right"));
    }
}
