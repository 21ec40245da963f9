//! Reading and writing the files djinn exchanges with the outside: reads
//! bounded, writes atomic.
//!
//! A file is refused by its size before it is read, so that a hostile plan,
//! profile or `config.json` costs a `stat`, not the 90× its size that parsing
//! would take (the limits are in [`crate::limits`]). The size is checked twice:
//! from the metadata, and while reading (a pipe or a growing file has no
//! trustworthy length).
//!
//! Every file djinn writes (plans, profiles, traces, JSON metrics) goes
//! through [`write_atomic`]: written to a temporary file in the same directory
//! (so on the same filesystem), synced, then renamed over the destination. A
//! failing or interrupted write leaves the previous file whole, or nothing,
//! never a partial file; readers see the old bytes or the new ones. A
//! directory of files (`djinn-synth`'s checkpoint) is built in a
//! [`StagingDir`] and moved into place at the end.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::units::fmt_bytes;

/// Why a bounded read failed.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// Larger than `limit` bytes; `size` when the metadata said how large.
    TooLarge {
        size: Option<u64>,
        limit: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::TooLarge { size, limit } => write!(
                f,
                "{}over the limit of {limit} bytes ({}; docs/plan-format.md, section Limits)",
                size.map_or("it is ".into(), |s| format!("it is {s} bytes, ")),
                fmt_bytes(*limit)
            ),
        }
    }
}

/// Holds `text` already in memory (stdin, an embedded preset) to the limit a file of it would have.
pub fn check_text_len(text: &str, limit: u64) -> Result<(), ReadError> {
    match text.len() as u64 {
        size if size > limit => Err(ReadError::TooLarge { size: Some(size), limit }),
        _ => Ok(()),
    }
}

/// The UTF-8 text of `path`, refused if it is over `limit` bytes.
pub fn read_to_string_limited(path: &Path, limit: u64) -> Result<String, ReadError> {
    let file = File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if meta.is_file() && meta.len() > limit {
        return Err(ReadError::TooLarge { size: Some(meta.len()), limit });
    }
    let mut text = String::new();
    file.take(limit.saturating_add(1)).read_to_string(&mut text).map_err(ReadError::Io)?;
    if text.len() as u64 > limit {
        return Err(ReadError::TooLarge { size: None, limit });
    }
    Ok(text)
}

/// The directory `path` is in (`.` for a bare file name), and its file name.
fn split(path: &Path) -> io::Result<(&Path, &std::ffi::OsStr)> {
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// A name for a temporary sibling of `name` in `dir`, unique in this process
/// and hidden (`.plan.toml.tmp-1234-0`), so that no tool mistakes it for the real file.
fn temp_sibling(dir: &Path, name: &std::ffi::OsStr, what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    dir.join(tmp)
}

/// Writes `bytes` to `path` atomically (see the module docs). An existing
/// file's permissions carry over to the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = split(path)?;
    if path.is_dir() {
        return Err(io::Error::other("it is a directory"));
    }
    let tmp = temp_sibling(dir, name, "tmp");
    let result = (|| {
        let mut file = File::options().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks, before long work whose result goes to `path`, that [`write_atomic`]
/// could write it there: the directory exists and takes a new file, and
/// `path` is not a directory. Nothing is left behind.
pub fn check_writable(path: &Path) -> io::Result<()> {
    let (dir, name) = split(path)?;
    if path.is_dir() {
        return Err(io::Error::other("it is a directory"));
    }
    let tmp = temp_sibling(dir, name, "probe");
    File::options().write(true).create_new(true).open(&tmp)?;
    std::fs::remove_file(&tmp)
}

/// A directory built under a hidden sibling name (`.ckpt.partial`) and moved
/// to its destination by [`StagingDir::commit`]. Dropped uncommitted (an
/// error), it is removed; left behind by a killed process, it is hidden,
/// and the next `StagingDir::new` for the same destination clears it.
pub struct StagingDir {
    staging: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl StagingDir {
    /// An empty staging directory beside `dest` (whose parent is created if missing).
    pub fn new(dest: &Path) -> io::Result<StagingDir> {
        let (dir, name) = split(dest)?;
        std::fs::create_dir_all(dir)?;
        let mut staged = OsString::from(".");
        staged.push(name);
        staged.push(".partial");
        let staging = dir.join(staged);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?; // an interrupted earlier run's
        }
        std::fs::create_dir(&staging)?;
        Ok(StagingDir { staging, dest: dest.to_path_buf(), committed: false })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the staged files to the destination: the whole directory in one
    /// rename when the destination is absent or empty, else file by file
    /// (replacing files of the same names, keeping others).
    pub fn commit(mut self) -> io::Result<()> {
        let empty = match std::fs::read_dir(&self.dest) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if !(empty && std::fs::rename(&self.staging, &self.dest).is_ok()) {
            for entry in std::fs::read_dir(&self.staging)? {
                let entry = entry?;
                std::fs::rename(entry.path(), self.dest.join(entry.file_name()))?;
            }
            std::fs::remove_dir(&self.staging)?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; 1001]).unwrap();
        let e = read_to_string_limited(&path, 1000).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { size: Some(1001), limit: 1000 }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "it is 1001 bytes, over the limit of 1000 bytes (1000 B; docs/plan-format.md, section Limits)"
        );
        assert_eq!(read_to_string_limited(&path, 1001).unwrap().len(), 1001);
    }

    #[test]
    fn a_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_to_string_limited(dir.path(), 1000).unwrap_err();
        assert!(matches!(&e, ReadError::Io(io) if io.to_string().contains("Is a directory")), "{e:?}");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(listing(dir.path()), ["plan.toml"]);
    }

    #[test]
    fn an_atomic_write_keeps_the_permissions_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn readers_never_see_a_partial_file() {
        // std::fs::write truncates, then writes: a reader racing it sees an empty
        // or half-written file. An atomic write is seen whole, old or new.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        let (a, b) = (vec![b'a'; 1 << 20], vec![b'b'; 1 << 20]);
        write_atomic(&path, &a).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let got = std::fs::read(&path).unwrap();
                    assert!(got == a || got == b, "a reader saw {} bytes of a partial file", got.len());
                    reads += 1;
                }
            });
            for i in 0..100 {
                write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            reader.join().unwrap();
        });
    }

    #[test]
    fn a_write_onto_a_directory_fails_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::create_dir(&target).unwrap();
        let e = write_atomic(&target, b"x").unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert!(check_writable(&target).is_err());
        assert!(check_writable(&dir.path().join("missing/out.json")).is_err());
        check_writable(&dir.path().join("out.json")).unwrap();
        assert_eq!(listing(dir.path()), ["out"]);
    }

    #[test]
    fn a_staging_directory_appears_at_its_destination_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ckpt");
        let staged = StagingDir::new(&dest).unwrap();
        std::fs::write(staged.path().join("model.safetensors"), b"w").unwrap();
        assert!(!dest.exists());
        staged.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), b"w");
        // Dropped without a commit (an error): nothing at the destination, no staging left.
        let other = dir.path().join("other");
        let staged = StagingDir::new(&other).unwrap();
        std::fs::write(staged.path().join("model.safetensors"), b"w").unwrap();
        drop(staged);
        assert_eq!(listing(dir.path()), ["ckpt"]);
    }

    #[test]
    fn a_staging_directory_merges_into_a_non_empty_destination_and_clears_a_killed_runs_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ckpt");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("README.md"), b"mine").unwrap();
        std::fs::write(dest.join("model.safetensors"), b"old").unwrap();
        std::fs::create_dir(dir.path().join(".ckpt.partial")).unwrap(); // a killed run's
        std::fs::write(dir.path().join(".ckpt.partial/junk"), b"j").unwrap();
        let staged = StagingDir::new(&dest).unwrap();
        assert!(!staged.path().join("junk").exists());
        std::fs::write(staged.path().join("model.safetensors"), b"new").unwrap();
        staged.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), b"new");
        assert_eq!(std::fs::read(dest.join("README.md")).unwrap(), b"mine");
        assert!(!dir.path().join(".ckpt.partial").exists());
    }
}
