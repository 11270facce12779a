//! The state directory and its files: created `0700`, written atomically (a unique temp file
//! opened with `O_EXCL`, fsync, rename, fsync of the directory), never through a symlink and
//! never when the directory belongs to another user.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn refuse(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what)
}

/// Creates (or checks) the state directory: a real directory, ours, mode `0700`.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) => {
            if m.file_type().is_symlink() {
                return Err(refuse(format!(
                    "{} is a symlink; refusing to use it as the state directory",
                    dir.display()
                )));
            }
            if !m.is_dir() {
                return Err(refuse(format!("{} is not a directory", dir.display())));
            }
            if m.uid() != nix::unistd::geteuid().as_raw() {
                return Err(refuse(format!("{} belongs to another user", dir.display())));
            }
            if m.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            // `recursive` leaves an existing parent alone but the leaf gets 0700 (umask aside).
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// Writes `data` to `dir/name` atomically with mode `0600`.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<PathBuf> {
    ensure_dir(dir)?;
    let target = dir.join(name);
    if let Ok(m) = fs::symlink_metadata(&target) {
        if m.file_type().is_symlink() {
            return Err(refuse(format!(
                "{} is a symlink; refusing to write through it",
                target.display()
            )));
        }
    }
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|_| io::Error::other("no randomness for a temp name"))?;
    let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true) // O_EXCL: never follow or reuse what someone else put there
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|_| target)
}

/// Reads `dir/name` if it exists: never through a symlink, and only a file that only its owner
/// can read or write (a secret someone else could have set is not one).
pub fn read_private(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(name);
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let m = f.metadata()?;
    if !m.is_file() || m.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "{} is not a private file (0600); refusing to use it",
            path.display()
        )));
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(Some(data))
}

/// Makes `dir/name` a fresh random secret (32 random bytes, hex; `0600`, `O_EXCL`) unless it
/// exists already: a secret is made once and never overwritten.
pub fn create_secret(dir: &Path, name: &str) -> io::Result<()> {
    ensure_dir(dir)?;
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(name));
    match created {
        Ok(mut f) => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(|_| io::Error::other("no randomness for a secret"))?;
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            f.write_all(hex.as_bytes())?;
            f.sync_all()
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// An exclusive lock on `dir/name`, held until dropped (or the process ends).
pub struct DirLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// [`DirLock`] at once: `Err` with `WouldBlock` when another live process holds it.
pub fn lock_exclusive(dir: &Path, name: &str) -> io::Result<DirLock> {
    lock(dir, name, nix::fcntl::FlockArg::LockExclusiveNonblock)
}

/// [`DirLock`], waiting while another process holds it (blocking: call from a blocking thread).
pub fn lock_exclusive_wait(dir: &Path, name: &str) -> io::Result<DirLock> {
    lock(dir, name, nix::fcntl::FlockArg::LockExclusive)
}

fn lock(dir: &Path, name: &str, how: nix::fcntl::FlockArg) -> io::Result<DirLock> {
    ensure_dir(dir)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(name))?;
    match nix::fcntl::Flock::lock(f, how) {
        Ok(l) => Ok(DirLock { _lock: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "held by another process",
        )),
        Err((_, e)) => Err(io::Error::other(e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_0600_in_0700_dir() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        let p = write_atomic(&dir, "token", b"secret").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        write_atomic(&dir, "token", b"again").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"again");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn refuses_symlinked_file_and_directory() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        ensure_dir(&dir).unwrap();
        let victim = base.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("token")).unwrap();
        assert!(write_atomic(&dir, "token", b"evil").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        let linkdir = base.path().join("linkdir");
        std::os::unix::fs::symlink(&dir, &linkdir).unwrap();
        assert!(write_atomic(&linkdir, "x", b"y").is_err());
    }
}
