//! Streams one safetensors shard to disk: header, then every tensor's values.
//!
//! A 13B checkpoint is 26 GB, more than this machine's memory, so a shard is
//! never held whole. Its data is cut into batches of whole chunks
//! ([`crate::rng::CHUNK_ELEMS`] values each, a batch may span tensors); the
//! chunks of a batch are generated in parallel (rayon) into one buffer, and a
//! writer thread writes full buffers with one large sequential `write_all`
//! while the next batch is generated. Two buffers circulate between the two
//! sides, so memory stays at two batches and the disk never waits on an
//! allocation.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::{anyhow, Context, Result};
use rayon::prelude::*;

use crate::layout::Shard;
use crate::rng::{fill_chunk, name_hash, Scratch, CHUNK_ELEMS};

/// Default batch: 64 MiB, large enough for sequential writes at full disk speed.
pub const DEFAULT_BATCH_BYTES: u64 = 64 << 20;

/// One chunk of one tensor, and where its bytes go in the batch buffer.
#[derive(Debug, Clone, Copy)]
struct Piece {
    tensor: usize,
    chunk: u64,
    /// Byte range inside the batch buffer.
    start: usize,
    len: usize,
}

/// Cuts the shard's data into batches of whole chunks, at most `batch_bytes`
/// each (a single chunk larger than that is a batch of its own).
fn batches(shard: &Shard, batch_bytes: u64) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut filled = 0u64;
    for (ti, t) in shard.tensors.iter().enumerate() {
        let elems = t.elems();
        let esize = t.dtype.size();
        for chunk in 0..elems.div_ceil(CHUNK_ELEMS) {
            let n = CHUNK_ELEMS.min(elems - chunk * CHUNK_ELEMS);
            let len = n * esize;
            if filled > 0 && filled + len > batch_bytes {
                out.push(Vec::new());
                filled = 0;
            }
            out.last_mut().unwrap().push(Piece { tensor: ti, chunk, start: filled as usize, len: len as usize });
            filled += len;
        }
    }
    out.retain(|b| !b.is_empty());
    out
}

/// Generates one batch into `buf` (resized to the batch's length), chunks in parallel.
fn generate(shard: &Shard, hashes: &[u64], seed: u64, pieces: &[Piece], buf: &mut Vec<u8>) {
    let total = pieces.last().map_or(0, |p| p.start + p.len);
    buf.resize(total, 0);
    let mut rest: &mut [u8] = buf;
    let mut work = Vec::with_capacity(pieces.len());
    for p in pieces {
        let (head, tail) = rest.split_at_mut(p.len);
        work.push((*p, head));
        rest = tail;
    }
    work.into_par_iter().for_each_init(Scratch::default, |scratch, (p, out)| {
        let t = &shard.tensors[p.tensor];
        fill_chunk(seed, hashes[p.tensor], p.chunk, t.init, t.dtype, out, scratch);
    });
}

/// Writes `shard` to `path`. `written` is advanced by the data bytes as they
/// reach the file (for progress reports from another thread). The file is
/// synced before returning, so a timing of this call includes the disk.
pub fn write_shard(path: &Path, shard: &Shard, seed: u64, batch_bytes: u64, written: &AtomicU64) -> Result<()> {
    let shown = path.display().to_string();
    let mut file = File::create(path).with_context(|| format!("cannot create {shown}"))?;
    file.write_all(&(shard.header.len() as u64).to_le_bytes())
        .and_then(|_| file.write_all(&shard.header))
        .with_context(|| format!("cannot write the header of {shown}"))?;
    let hashes: Vec<u64> = shard.tensors.iter().map(|t| name_hash(&t.name)).collect();
    let plan = batches(shard, batch_bytes);

    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    empty_tx.send(Vec::new()).and_then(|_| empty_tx.send(Vec::new())).expect("the receiver is alive");

    std::thread::scope(|s| -> Result<()> {
        let writer = s.spawn(move || -> Result<File> {
            for buf in full_rx {
                file.write_all(&buf).with_context(|| format!("cannot write {shown}"))?;
                written.fetch_add(buf.len() as u64, Ordering::Relaxed);
                // The generator may have stopped on an error of ours; nothing to hand back then.
                let _ = empty_tx.send(buf);
            }
            file.sync_all().with_context(|| format!("cannot flush {shown} to disk"))?;
            Ok(file)
        });
        for pieces in &plan {
            // No free buffer means the writer stopped: its error is reported below.
            let Ok(mut buf) = empty_rx.recv() else { break };
            generate(shard, &hashes, seed, pieces, &mut buf);
            if full_tx.send(buf).is_err() {
                break;
            }
        }
        drop(full_tx);
        let file = writer.join().map_err(|_| anyhow!("the writer thread of {} panicked", path.display()))??;
        let expected = shard.file_bytes();
        let actual = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
        if actual != expected {
            return Err(anyhow!("{} has {actual} bytes after writing, expected {expected}", path.display()));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{checkpoint_tensors, shard, tests::tiny_arch};
    use djinn_core::Dtype;

    #[test]
    fn batches_cover_every_chunk_once_within_the_limit() {
        let shards = shard(checkpoint_tensors(&tiny_arch(false), Dtype::F16), u64::MAX);
        let s = &shards[0];
        for batch_bytes in [1, 4096, 100_000, DEFAULT_BATCH_BYTES] {
            let plan = batches(s, batch_bytes);
            let covered: u64 = plan.iter().flatten().map(|p| p.len as u64).sum();
            assert_eq!(covered, s.data_bytes(), "batch {batch_bytes}");
            for b in &plan {
                let len = b.last().unwrap().start + b.last().unwrap().len;
                assert!(b.len() == 1 || len as u64 <= batch_bytes, "batch {batch_bytes}: {len} bytes");
                assert!(b.windows(2).all(|w| w[0].start + w[0].len == w[1].start));
            }
        }
    }

    #[test]
    fn the_batch_size_does_not_change_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let shards = shard(checkpoint_tensors(&tiny_arch(true), Dtype::Bf16), u64::MAX);
        let written = AtomicU64::new(0);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_shard(&a, &shards[0], 5, 4096, &written).unwrap();
        write_shard(&b, &shards[0], 5, DEFAULT_BATCH_BYTES, &written).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(written.load(Ordering::Relaxed), 2 * shards[0].data_bytes());
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let shards = shard(checkpoint_tensors(&tiny_arch(true), Dtype::F16), u64::MAX);
        let path = Path::new("/nonexistent-dir/model.safetensors");
        let err = write_shard(path, &shards[0], 0, DEFAULT_BATCH_BYTES, &AtomicU64::new(0)).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent-dir/model.safetensors"), "{err:#}");
    }
}
