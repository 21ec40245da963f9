//! Reading the files djinn takes from the outside, bounded.
//!
//! A file is refused by its size before it is read, so that a hostile plan,
//! profile or `config.json` costs a `stat`, not the 90× its size that parsing
//! would take (the limits are in [`crate::limits`]). The size is checked twice:
//! from the metadata, and while reading (a pipe or a growing file has no
//! trustworthy length).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

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
            ReadError::TooLarge { size: Some(size), limit } => {
                write!(f, "the file is {size} bytes, over the limit of {limit} bytes")
            }
            ReadError::TooLarge { size: None, limit } => write!(f, "the file is over the limit of {limit} bytes"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; 1001]).unwrap();
        let e = read_to_string_limited(&path, 1000).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { size: Some(1001), limit: 1000 }), "{e:?}");
        assert_eq!(e.to_string(), "the file is 1001 bytes, over the limit of 1000 bytes");
        assert_eq!(read_to_string_limited(&path, 1001).unwrap().len(), 1001);
    }

    #[test]
    fn a_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_to_string_limited(dir.path(), 1000).unwrap_err();
        assert!(matches!(&e, ReadError::Io(io) if io.to_string().contains("Is a directory")), "{e:?}");
    }
}
