//! `user_key` = first 16 bytes of HMAC-SHA256(secret, user_id), as 32 lowercase hex
//! characters. The raw `user_id` never leaves the partition actor.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The pseudonymous key of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey([u8; 16]);

impl UserKey {
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for byte in self.0 {
            hex.push(DIGITS[usize::from(byte >> 4)] as char);
            hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        hex
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Computes user keys with one secret. The keyed HMAC state is built once and
/// cloned per user id, which saves the two key-block compressions each time.
#[derive(Clone)]
pub struct UserKeyer {
    keyed: Hmac<Sha256>,
}

impl UserKeyer {
    pub fn new(secret: &[u8]) -> UserKeyer {
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
        UserKeyer { keyed }
    }

    pub fn user_key(&self, user_id: &str) -> UserKey {
        self.user_key_of_bytes(user_id.as_bytes())
    }

    /// The key of raw bytes: a `user_id`'s key when they are its UTF-8 text.
    /// For a dead-lettered record's Kafka key, which need not be UTF-8: a
    /// lossy conversion first would give two different keys one pseudonym.
    pub fn user_key_of_bytes(&self, user_id: &[u8]) -> UserKey {
        let mut mac = self.keyed.clone();
        mac.update(user_id);
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        UserKey(key)
    }
}

impl UserKeyer {
    /// A public fingerprint of the secret, stored with the data keyed by it so
    /// that a node with a different secret refuses to write (it would split
    /// every user in two). A hash of an HMAC, so it is no user's key and says
    /// nothing of the secret.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut mac = self.keyed.clone();
        mac.update(b"streamreel secret fingerprint v1");
        let digest = Sha256::digest(mac.finalize().into_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        UserKey(key).to_hex()
    }
}

impl fmt::Debug for UserKeyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKeyer(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_rfc4231_test_case_2_truncated() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let keyer = UserKeyer::new(b"Jefe");
        assert_eq!(
            keyer.user_key("what do ya want for nothing?").to_hex(),
            "5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn different_secrets_give_different_keys() {
        let a = UserKeyer::new(b"secret-a").user_key("user-1");
        let b = UserKeyer::new(b"secret-b").user_key("user-1");
        assert_ne!(a, b);
    }

    #[test]
    fn the_fingerprint_tells_secrets_apart_and_is_no_user_key() {
        let a = UserKeyer::new(b"secret-a");
        assert_eq!(a.fingerprint(), UserKeyer::new(b"secret-a").fingerprint());
        assert_ne!(a.fingerprint(), UserKeyer::new(b"secret-b").fingerprint());
        assert_ne!(
            a.fingerprint(),
            a.user_key("streamreel secret fingerprint v1").to_hex()
        );
        assert!(!format!("{a:?}").contains("secret-a"));
    }

    proptest! {
        #[test]
        fn key_is_32_lowercase_hex_and_deterministic(user_id in ".{0,64}") {
            let keyer = UserKeyer::new(b"0123456789abcdef");
            let hex = keyer.user_key(&user_id).to_hex();
            prop_assert_eq!(hex.len(), 32);
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert_eq!(hex, keyer.user_key(&user_id).to_hex());
        }
    }
}
