//! The node's Ed25519 secret key: created on first run, kept in `data_dir` (mode 0600), so the
//! endpoint id stays the same across restarts.

use std::io::Write;
use std::path::Path;

use iroh::SecretKey;

const KEY_FILE: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write the node key in {dir}: {source}")]
    Io {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the node key file {0} is damaged (expected 64 hex characters); move it away to create a new identity"
    )]
    Damaged(std::path::PathBuf),
}

/// Loads the node key, creating it if there is none.
pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, IdentityError> {
    let io = |source| IdentityError::Io {
        dir: data_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes)
                .map_err(|_| IdentityError::Damaged(path.clone()))?;
            Ok(SecretKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            // Written to a temp file with 0600 and renamed, so a crash never leaves half a key.
            let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(hex::encode(key.to_bytes()).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_loads_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(KEY_FILE), "garbage").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Damaged(_))
        ));
    }
}
