//! Ed25519 private keys kept in files (PKCS#8 PEM): the register's and the
//! gateway's signing keys.

use std::path::Path;

/// Creates an Ed25519 key at `path` (mode 0600, parent directories made)
/// unless a file is already there. Returns whether it created one.
pub fn ensure_ed25519_key_file(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory)?;
    }
    let key = esocial_auth::SigningKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
    std::io::Write::write_all(&mut file, key.private_pkcs8_pem().as_bytes())?;
    file.sync_all()?;
    Ok(true)
}

/// Reads a key file, naming the file, what the key is for, and the command
/// that makes one when it cannot be read.
pub fn read_key_file(path: &Path, purpose: &str, variable: &str, create_command: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!(
            "cannot read the {purpose} {} ({variable}): {error}; create one with `{create_command}`",
            path.display()
        )
    })
}
