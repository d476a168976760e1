//! Tokens and the pseudonymisation secret: from the environment, else from a
//! file kept out of version control.

use super::*;

/// Reads a secret file; injected, so that validation stays apart from the disk.
/// Bytes, not text: a secret may be any bytes (`head -c 32 /dev/urandom`).
pub(super) type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Which token, and the variable it comes from first.
pub(super) struct TokenSource {
    pub which: &'static str,
    pub env: &'static str,
}

/// A token from the environment, else from a file (trimmed); an empty file,
/// and a token no HTTP header can carry, are refused.
pub(super) fn read_token(
    source: TokenSource,
    from_env: Option<String>,
    file: Option<&Path>,
    read_file: ReadFile,
) -> Result<Option<String>, ConfigError> {
    let checked = |token: &str, from: String| {
        if is_header_safe(token) {
            Ok(Some(token.to_string()))
        } else {
            Err(ConfigError::TokenNotAscii {
                which: source.which,
                from,
            })
        }
    };
    if let Some(token) = from_env.filter(|t| !t.trim().is_empty()) {
        return checked(token.trim(), source.env.to_string());
    }
    let Some(file) = file else {
        return Ok(None);
    };
    let bytes = read_file(file).map_err(|source| ConfigError::ReadNamedFile {
        what: "token file",
        path: file.display().to_string(),
        source,
    })?;
    // Bytes that are not UTF-8 become U+FFFD, which the header check refuses
    // by the token's name.
    let text = String::from_utf8_lossy(&bytes);
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken {
            path: file.display().to_string(),
        });
    }
    checked(token, file.display().to_string())
}

/// Whether an HTTP header value can carry `token`: printable ASCII only.
pub fn is_header_safe(token: &str) -> bool {
    token.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// The environment wins over the file; demo mode falls back to a fixed secret.
pub(super) fn resolve_secret(
    from_env: Option<String>,
    file: Option<&Path>,
    demo: bool,
    read_file: ReadFile,
) -> Result<Vec<u8>, ConfigError> {
    // A blank variable counts as unset, as for the tokens.
    match (from_env.filter(|s| !s.trim().is_empty()), file) {
        (Some(secret), _) => long_enough(secret.into_bytes(), SECRET_ENV, "it"),
        (None, Some(file)) => {
            let mut secret = read_file(file).map_err(|source| ConfigError::ReadNamedFile {
                what: "user-key secret file",
                path: file.display().to_string(),
                source,
            })?;
            // A text file's line breaks are the editor's, not the secret's;
            // a binary file (random bytes) is taken whole, as its last byte
            // may be a 0x0A of the secret.
            if std::str::from_utf8(&secret).is_ok() {
                let kept = secret
                    .iter()
                    .rposition(|b| !matches!(b, b'\n' | b'\r'))
                    .map_or(0, |last| last + 1);
                secret.truncate(kept);
            }
            long_enough(
                secret,
                "node.user-key-secret-file",
                &file.display().to_string(),
            )
        }
        (None, None) if demo => Ok(DEMO_SECRET.as_bytes().to_vec()),
        (None, None) => Err(ConfigError::MissingSecret),
    }
}

/// The secret from `source` (named by `key`), unless it is too short to be one.
fn long_enough(secret: Vec<u8>, key: &'static str, source: &str) -> Result<Vec<u8>, ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::Invalid {
            key,
            reason: format!(
                "{source} holds {} bytes; the secret must be at least {MIN_SECRET_BYTES}",
                secret.len()
            ),
        });
    }
    Ok(secret)
}
