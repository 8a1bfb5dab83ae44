//! ICE credentials: the username fragment and password of one side (RFC 8445 §5.3,
//! RFC 8839 §5.4).

use core::fmt;

use rand::{CryptoRng, RngCore};

/// `ice-char` (RFC 8839 §5.4): ALPHA / DIGIT / "+" / "/". Exactly 64 symbols, so each
/// random character carries 6 bits and `byte & 63` picks one without bias.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Shortest ufrag RFC 8839 allows.
pub const MIN_UFRAG_LEN: usize = 4;
/// Shortest password RFC 8839 allows.
pub const MIN_PWD_LEN: usize = 22;
/// Longest ufrag or password RFC 8839 allows.
pub const MAX_CREDENTIAL_LEN: usize = 256;

/// Generated ufrags have 8 characters (48 random bits), well above the 24 bits RFC 8445
/// requires, because the per-core driver routes checks by our ufrag and a collision
/// between two live transports would misroute them.
pub const GENERATED_UFRAG_LEN: usize = 8;
/// Generated passwords have 24 characters (144 random bits; RFC 8445 requires 128).
pub const GENERATED_PWD_LEN: usize = 24;

// RFC 8445 §5.3: at least 24 random bits in the ufrag and 128 in the password.
const _: () = assert!(GENERATED_UFRAG_LEN * 6 >= 24 && GENERATED_PWD_LEN * 6 >= 128);
const _: () = assert!(GENERATED_UFRAG_LEN >= MIN_UFRAG_LEN && GENERATED_PWD_LEN >= MIN_PWD_LEN);

/// Why a ufrag or password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The ufrag length is outside 4..=256.
    #[error("ICE ufrag must be 4 to 256 characters, got {0}")]
    UfragLength(usize),
    /// The password length is outside 22..=256.
    #[error("ICE password must be 22 to 256 characters, got {0}")]
    PwdLength(usize),
    /// The ufrag contains a character outside ALPHA / DIGIT / "+" / "/".
    #[error("ICE ufrag contains a character that is not an ice-char")]
    UfragChars,
    /// The password contains a character outside ALPHA / DIGIT / "+" / "/".
    #[error("ICE password contains a character that is not an ice-char")]
    PwdChars,
}

fn is_ice_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// A validated ICE ufrag and password.
///
/// Validation matters beyond pedantry: a ufrag with a `:` would make USERNAME ambiguous,
/// and `ice-char`-only passwords are what lets STUN use them as HMAC keys without
/// SASLprep. `Debug` redacts both values so credentials never reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    ufrag: String,
    pwd: String,
}

impl IceCredentials {
    /// Checks `ufrag` (4..=256 ice-chars) and `pwd` (22..=256 ice-chars).
    pub fn new(ufrag: impl Into<String>, pwd: impl Into<String>) -> Result<Self, CredentialsError> {
        let (ufrag, pwd) = (ufrag.into(), pwd.into());
        if !(MIN_UFRAG_LEN..=MAX_CREDENTIAL_LEN).contains(&ufrag.len()) {
            return Err(CredentialsError::UfragLength(ufrag.len()));
        }
        if !is_ice_chars(&ufrag) {
            return Err(CredentialsError::UfragChars);
        }
        if !(MIN_PWD_LEN..=MAX_CREDENTIAL_LEN).contains(&pwd.len()) {
            return Err(CredentialsError::PwdLength(pwd.len()));
        }
        if !is_ice_chars(&pwd) {
            return Err(CredentialsError::PwdChars);
        }
        Ok(Self { ufrag, pwd })
    }

    /// Fresh random credentials from the thread-local CSPRNG: a
    /// [`GENERATED_UFRAG_LEN`]-character ufrag and a [`GENERATED_PWD_LEN`]-character
    /// password.
    pub fn generate() -> Self {
        Self::generate_with(&mut rand::thread_rng())
    }

    /// Like [`Self::generate`] with a caller-supplied CSPRNG (seeded ones make tests
    /// reproducible).
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self {
            ufrag: random_ice_chars(rng, GENERATED_UFRAG_LEN),
            pwd: random_ice_chars(rng, GENERATED_PWD_LEN),
        }
    }

    /// The username fragment; public, it travels in SDP and in every check's USERNAME.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// The password; secret, it keys MESSAGE-INTEGRITY.
    pub fn pwd(&self) -> &str {
        &self.pwd
    }
}

fn random_ice_chars<R: RngCore>(rng: &mut R, len: usize) -> String {
    let mut bytes = [0u8; MAX_CREDENTIAL_LEN];
    let len = len.min(MAX_CREDENTIAL_LEN);
    let out = bytes.get_mut(..len).unwrap_or_default();
    rng.fill_bytes(out);
    out.iter()
        .map(|b| char::from(ICE_CHARS[usize::from(b & 63)]))
        .collect()
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &"<redacted>")
            .field("pwd", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn generated_credentials_are_valid_and_distinct() {
        let a = IceCredentials::generate();
        let b = IceCredentials::generate();
        assert_eq!(IceCredentials::new(a.ufrag(), a.pwd()), Ok(a.clone()));
        assert_eq!(a.ufrag().len(), GENERATED_UFRAG_LEN);
        assert_eq!(a.pwd().len(), GENERATED_PWD_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn seeded_generation_is_reproducible() {
        let a = IceCredentials::generate_with(&mut StdRng::seed_from_u64(7));
        let b = IceCredentials::generate_with(&mut StdRng::seed_from_u64(7));
        assert_eq!(a, b);
    }

    #[test]
    fn validation_rejects_bad_credentials() {
        let pwd = "VOkJxbRl1RmTxUk/WvJxBt";
        assert_eq!(
            IceCredentials::new("abc", pwd),
            Err(CredentialsError::UfragLength(3))
        );
        assert_eq!(
            IceCredentials::new("ab:c", pwd),
            Err(CredentialsError::UfragChars)
        );
        assert_eq!(
            IceCredentials::new("abcd", "short"),
            Err(CredentialsError::PwdLength(5))
        );
        assert_eq!(
            IceCredentials::new("abcd", "VOkJxbRl1RmTxUk-WvJxBt"),
            Err(CredentialsError::PwdChars)
        );
        assert!(IceCredentials::new("evtj", pwd).is_ok());
    }

    #[test]
    fn debug_redacts() {
        let c = IceCredentials::new("evtj", "VOkJxbRl1RmTxUk/WvJxBt").unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("evtj") && !s.contains("VOkJ"), "{s}");
    }
}
