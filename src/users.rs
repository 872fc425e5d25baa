//! Passwords (as typed, hashed with Argon2id and the OWASP parameters) and
//! API key secrets.

use std::fmt;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::error::{Error, Result};
/// Argon2id v19, m=19456 KiB, t=2, p=1: the crate's defaults are OWASP's minimum.
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &Password) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash the password: {e}")))
}

/// Check `password` against `hash`; with no hash (unknown user) a dummy one is
/// checked so the time taken does not tell whether the user exists.
pub fn verify_password(hash: Option<&str>, password: &Password) -> bool {
    let dummy = dummy_hash();
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => (dummy, false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = argon2()
        .verify_password(password.expose().as_bytes(), &parsed)
        .is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2()
            .hash_password(b"not a password anyone can type", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// A new API key: `dsk_` and 64 hex digits (256 random bits).
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("dsk_{hex}")
}

/// What is stored of an API key: its BLAKE2b-256 digest.
pub fn hash_api_key(key: &str) -> String {
    blake2b_simd::Params::new()
        .hash_length(32)
        .personal(b"diskette-apikey")
        .hash(key.as_bytes())
        .to_hex()
        .to_string()
}

/// 32 random bytes, URL-safe base64: CSRF tokens and request ids.
pub fn random_token(len: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Read a password for the CLI: one line of stdin with `--password-stdin`,
/// else a prompt on the terminal with echo turned off.
pub fn read_password(from_stdin: bool, prompt: &str) -> Result<Password> {
    use std::io::{BufRead, IsTerminal, Write};
    let line = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::io("read", "stdin", e))?;
        line
    } else {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        // `stty` keeps this free of terminal ioctls of our own.
        let echo_off = std::process::Command::new("stty")
            .arg("-echo")
            .status()
            .is_ok();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if echo_off {
            let _ = std::process::Command::new("stty").arg("echo").status();
        }
        eprintln!();
        read.map_err(|e| Error::io("read", "terminal", e))?;
        line
    };
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    // The operator chooses deliberately here: a short password is warned
    // about, not refused (the web form, used by others, insists on 8).
    if Password::new_strong(password.clone()).is_err() && !password.is_empty() {
        eprintln!("warning: this password is short (fewer than 8 characters)");
    }
    Password::new(password).map_err(Error::Usage)
}

/// A password as typed: not empty, at most 1 KiB (hashing cost stays bounded).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MAX_BYTES: usize = 1024;

    pub fn new(s: String) -> Result<Self, String> {
        if s.is_empty() {
            Err("the password is empty".into())
        } else if s.len() > Self::MAX_BYTES {
            Err(format!(
                "the password is longer than {} bytes",
                Self::MAX_BYTES
            ))
        } else {
            Ok(Password(s))
        }
    }

    /// A password chosen for a new account or a change: at least 8 characters.
    pub fn new_strong(s: String) -> Result<Self, String> {
        if s.chars().count() < 8 {
            return Err("the password must have at least 8 characters".into());
        }
        Self::new(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let pw = Password::new("correct horse".into()).unwrap();
        let hash = hash_password(&pw).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(Some(&hash), &pw));
        assert!(!verify_password(
            Some(&hash),
            &Password::new("wrong".into()).unwrap()
        ));
        assert!(!verify_password(None, &pw));
    }

    #[test]
    fn api_keys_are_random_and_hashed() {
        let a = generate_api_key();
        assert_ne!(a, generate_api_key());
        assert_eq!(a.len(), 68);
        assert_eq!(hash_api_key(&a).len(), 64);
        assert_ne!(hash_api_key(&a), a);
    }

    #[test]
    fn password_limits() {
        assert!(Password::new(String::new()).is_err());
        assert!(Password::new("x".repeat(1025)).is_err());
        assert!(Password::new_strong("short".into()).is_err());
        assert!(format!("{:?}", Password::new("secret".into()).unwrap()).contains("***"));
    }
}
