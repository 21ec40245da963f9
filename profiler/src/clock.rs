//! Timing device work with pairs of CUDA events.
//!
//! The events are created up front and recorded around each piece of work as
//! it is enqueued; the host never waits between pieces, so the device runs
//! them back to back and each pair measures device time only (not the host's
//! enqueueing, as long as the host stays ahead). Times are read once the
//! stream has been synchronised.

use djinn_runtime::cuda::{CudaError, Event, Gpu, Stream};

pub struct Stopwatch {
    pairs: Vec<(Event, Event)>,
    used: usize,
    open: bool,
}

impl Stopwatch {
    /// Room for `n` timed pieces of work.
    pub fn new(gpu: &Gpu, n: usize) -> Result<Stopwatch, CudaError> {
        let pairs = (0..n).map(|_| Ok((Event::new(gpu, true)?, Event::new(gpu, true)?))).collect::<Result<_, _>>()?;
        Ok(Stopwatch { pairs, used: 0, open: false })
    }

    /// Marks the start of the next piece on `stream`.
    pub fn start(&mut self, stream: &Stream) -> Result<(), CudaError> {
        assert!(!self.open && self.used < self.pairs.len(), "stopwatch: start after start, or out of pairs");
        self.pairs[self.used].0.record(stream)?;
        self.open = true;
        Ok(())
    }

    /// Marks the end of the piece opened by [`Stopwatch::start`].
    pub fn stop(&mut self, stream: &Stream) -> Result<(), CudaError> {
        assert!(self.open, "stopwatch: stop without start");
        self.pairs[self.used].1.record(stream)?;
        self.used += 1;
        self.open = false;
        Ok(())
    }

    /// µs of every piece, in order; call after synchronising the stream.
    pub fn times_us(&self) -> Result<Vec<f64>, CudaError> {
        self.pairs[..self.used].iter().map(|(a, b)| Ok(b.ms_since(a)? as f64 * 1e3)).collect()
    }
}

/// Enqueues `work` `warm` times untimed, then `reps` times each between a
/// pair of events, all back to back on `stream`; returns the µs of each timed run.
pub fn time_each(
    gpu: &Gpu,
    stream: &Stream,
    warm: usize,
    reps: usize,
    mut work: impl FnMut() -> Result<(), CudaError>,
) -> Result<Vec<f64>, CudaError> {
    let mut sw = Stopwatch::new(gpu, reps)?;
    for _ in 0..warm {
        work()?;
    }
    for _ in 0..reps {
        sw.start(stream)?;
        work()?;
        sw.stop(stream)?;
    }
    stream.synchronize()?;
    sw.times_us()
}
