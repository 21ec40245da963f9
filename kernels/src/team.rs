//! A team of persistent worker threads for the CPU kernels.
//!
//! Why not a general pool: a decode step on the host is a chain of about a
//! dozen short data-parallel ops per layer (a norm, seven matrix-vector
//! products, attention, …), 10 µs to 2 ms each. A pool whose idle workers go
//! to sleep between ops pays a wake-up per op (about 0.2 ms each, 2.7 ms per
//! 13B layer, measured in BENCHMARKS.md), which is half the time the layer's
//! weights take to stream from memory. The team instead:
//!
//! * keeps its workers **spinning** between jobs for a while (`idle_spin`)
//!   and parks them only after that, so back-to-back ops cost a few cache-line
//!   transfers each, not a futex wake-up; [`Team::wake`] un-parks them ahead
//!   of a burst (the host lane calls it while it waits for the device);
//! * lets the **dispatching thread work** as worker 0 and returns when every
//!   worker is done (a spinning barrier), so a job is a fork-join with no
//!   queue;
//! * splits work **statically** ([`part`]): worker `w` of `n` takes the `w`-th
//!   contiguous range, so each worker streams its own span of the weights, and
//!   which worker computes an element never changes what it computes;
//! * **pins** each worker to its own core where the OS allows.
//!
//! One thread dispatches at a time (others wait on a lock); a job run from
//! inside a job runs inline on the calling worker. A panic in any worker is
//! re-raised in the dispatcher after every worker has finished the job.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::ops::Range;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks, unless set otherwise.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_millis(2);

/// Spins on a condition before each check starts yielding the core
/// (so a machine with more runnable threads than cores still makes progress).
const PURE_SPINS: u32 = 4096;

type Job = dyn Fn(usize, usize) + Sync;

struct Shared {
    /// Bumped by every dispatch (and by `wake`/`drop`, which carry no job).
    generation: AtomicU64,
    /// The generation that carries `job`.
    job_generation: AtomicU64,
    /// The current job; valid while the dispatcher waits in `run`.
    job: UnsafeCell<Option<*const Job>>,
    /// Workers (not counting the dispatcher) done with the current job.
    done: AtomicUsize,
    sleepers: AtomicUsize,
    idle_spin_ns: AtomicU64,
    stop: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    park: Mutex<()>,
    unpark: Condvar,
}

// SAFETY: `job` is written only by the dispatcher while no worker reads it
// (all are done with the previous job and the generation is not yet bumped),
// and read by workers only between that bump and their `done` increment.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Wakes the parked workers, if any, after the generation moved (a worker
    /// parks only while, under `park`, it still sees the old generation).
    fn unpark_sleepers(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.park.lock().unwrap_or_else(|e| e.into_inner());
            self.unpark.notify_all();
        }
    }
}

thread_local! {
    /// Whether this thread is running a team job (nested jobs run inline).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

pub struct Team {
    shared: Arc<Shared>,
    threads: usize,
    workers: Vec<JoinHandle<()>>,
    dispatch: Mutex<()>,
}

impl Team {
    /// A team of `threads` (≥ 1) including the dispatching thread: `threads - 1`
    /// workers are started now, each pinned to a core of its own if `pin` and
    /// the process may use at least `threads` cores.
    pub fn new(threads: usize, pin: bool) -> Team {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job_generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            idle_spin_ns: AtomicU64::new(DEFAULT_IDLE_SPIN.as_nanos() as u64),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
            park: Mutex::new(()),
            unpark: Condvar::new(),
        });
        let cores = if pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let pin_to = |w: usize| (cores.len() >= threads).then(|| cores[w]);
        let workers = (1..threads)
            .map(|w| {
                let shared = shared.clone();
                let core = pin_to(w);
                std::thread::Builder::new()
                    .name(format!("djinn-team-{w}"))
                    .spawn(move || {
                        if let Some(core) = core {
                            core_affinity::set_for_current(core);
                        }
                        worker(&shared, w, threads)
                    })
                    .expect("spawning a team worker thread")
            })
            .collect();
        Team { shared, threads, workers, dispatch: Mutex::new(()) }
    }

    /// The process-wide team the kernels use: `DJINN_THREADS` threads if set,
    /// else one per core the process may use; pinned.
    pub fn global() -> &'static Team {
        static TEAM: OnceLock<Team> = OnceLock::new();
        TEAM.get_or_init(|| {
            let threads = std::env::var("DJINN_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n >= 1)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            Team::new(threads, true)
        })
    }

    /// A team of one: every job runs on the calling thread (for work too small to split).
    pub fn solo() -> &'static Team {
        static SOLO: OnceLock<Team> = OnceLock::new();
        SOLO.get_or_init(|| Team::new(1, false))
    }

    /// The team for a job of `work` units: `self`, or [`Team::solo`] below `min`.
    pub fn for_work(&self, work: usize, min: usize) -> &Team {
        if work < min {
            Team::solo()
        } else {
            self
        }
    }

    /// Threads that share each job, the dispatcher included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How long idle workers spin before they park (until the next job or `wake`).
    pub fn set_idle_spin(&self, spin: Duration) {
        self.shared.idle_spin_ns.store(spin.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Un-parks sleeping workers so that they spin, ready, for `idle_spin`:
    /// call it ahead of a burst of jobs, while waiting for their input.
    pub fn wake(&self) {
        let _one_dispatcher = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let s = &self.shared;
        s.generation.fetch_add(1, Ordering::SeqCst);
        s.unpark_sleepers();
    }

    /// Runs `f(w, n)` for every worker `w < n = self.threads()` (the caller
    /// as `w = 0`) and returns when all have returned.
    pub fn run(&self, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.threads == 1 || IN_JOB.with(Cell::get) {
            for w in 0..self.threads {
                f(w, self.threads);
            }
            return;
        }
        let _one_dispatcher = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: every worker finished the previous job before the previous
        // `run` returned, and none reads `job` until the generation moves.
        // The pointer's lifetime is erased: it is dereferenced only until
        // every worker has reported done, below, while `f` is alive.
        unsafe {
            let erased: *const Job = std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), &'static Job>(f);
            *s.job.get() = Some(erased);
        }
        s.done.store(0, Ordering::Relaxed);
        // Generations move only under the dispatch lock: announce which one
        // carries the job before publishing it, so a worker that sees the new
        // generation also sees that it is a job.
        let generation = s.generation.load(Ordering::Relaxed) + 1;
        s.job_generation.store(generation, Ordering::SeqCst);
        s.generation.store(generation, Ordering::SeqCst);
        s.unpark_sleepers();
        IN_JOB.with(|c| c.set(true));
        let mine = catch_unwind(AssertUnwindSafe(|| f(0, self.threads)));
        IN_JOB.with(|c| c.set(false));
        let workers = self.threads - 1;
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < workers {
            relax(&mut spins);
        }
        // SAFETY: no worker reads `job` any more.
        unsafe { *s.job.get() = None };
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }

    /// Splits `out` into one contiguous piece per worker, each a multiple of
    /// `align` elements long (but the last), and runs `f(start, piece)` on
    /// each, `start` being the piece's first index in `out`.
    pub fn split_mut<T: Send>(&self, out: &mut [T], align: usize, f: impl Fn(usize, &mut [T]) + Sync) {
        let (ptr, len) = (SendPtr(out.as_mut_ptr()), out.len());
        self.run(&|w, n| {
            let r = part_aligned(len, align, w, n);
            if !r.is_empty() {
                // SAFETY: the pieces of `part_aligned` are disjoint ranges of
                // `out`, which `&mut` lends us exclusively for this call.
                let piece = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(r.start), r.len()) };
                f(r.start, piece);
            }
        });
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.wake();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A raw pointer that may cross to the workers (the caller proves disjointness).
pub struct SendPtr<T>(pub *mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: used only to hand disjoint ranges of one exclusive borrow to workers.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    #[inline(always)]
    pub fn get(&self) -> *mut T {
        self.0
    }
}

/// Worker `w` of `n`'s share of `0..len`: contiguous, balanced to within one element.
pub fn part(len: usize, w: usize, n: usize) -> Range<usize> {
    let (q, r) = (len / n, len % n);
    let start = w * q + w.min(r);
    start..start + q + usize::from(w < r)
}

/// [`part`] over units of `align` elements (the last unit may be short).
pub fn part_aligned(len: usize, align: usize, w: usize, n: usize) -> Range<usize> {
    let align = align.max(1);
    let units = part(len.div_ceil(align), w, n);
    (units.start * align).min(len)..(units.end * align).min(len)
}

/// One step of a wait loop: spin at first, then yield the core.
#[inline(always)]
fn relax(spins: &mut u32) {
    if *spins < PURE_SPINS {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn worker(s: &Shared, w: usize, n: usize) {
    IN_JOB.with(|c| c.set(true));
    // The generation the team was created at: a job dispatched before this
    // thread got going is still ahead of it.
    let mut seen = 0;
    loop {
        // Spin (then yield) until the generation moves or the idle time is up; then park.
        let (mut spins, since) = (0u32, Instant::now());
        loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            relax(&mut spins);
            if spins.is_multiple_of(256) && since.elapsed().as_nanos() as u64 >= s.idle_spin_ns.load(Ordering::Relaxed)
            {
                let mut guard = s.park.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.generation.load(Ordering::SeqCst) == seen {
                    guard = s.unpark.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(guard);
                seen = s.generation.load(Ordering::Acquire);
                break;
            }
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // A bump without a job (`wake`) just restarts the spin.
        if s.job_generation.load(Ordering::Acquire) != seen {
            continue;
        }
        // SAFETY: the dispatcher set `job` before publishing this generation
        // and keeps it alive until every worker has reported done.
        let job = unsafe { (*s.job.get()).expect("a job generation carries a job") };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(w, n) })) {
            *s.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range_in_order_without_overlap() {
        for len in [0, 1, 5, 16, 17, 1000] {
            for n in 1..=7 {
                let mut next = 0;
                for w in 0..n {
                    let r = part(len, w, n);
                    assert_eq!(r.start, next, "len {len} n {n} w {w}");
                    assert!(r.len() <= len / n + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
                let mut next = 0;
                for w in 0..n {
                    let r = part_aligned(len, 4, w, n);
                    assert_eq!(r.start, next);
                    assert!(r.start % 4 == 0 || r.is_empty());
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn every_worker_runs_every_job_once() {
        let team = Team::new(4, false);
        for round in 0..200u64 {
            let hits: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
            team.run(&|w, n| {
                assert_eq!(n, 4);
                hits[w].fetch_add(round + 1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == round + 1), "round {round}");
        }
    }

    #[test]
    fn split_mut_writes_every_element_once() {
        let team = Team::new(3, false);
        let mut v = vec![0u32; 1001];
        team.split_mut(&mut v, 8, |start, piece| {
            assert_eq!(start % 8, 0);
            for (i, x) in piece.iter_mut().enumerate() {
                *x += (start + i) as u32;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    }

    #[test]
    fn parked_workers_wake_for_the_next_job() {
        let team = Team::new(3, false);
        team.set_idle_spin(Duration::from_micros(10));
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(2)); // every worker parks
            let count = AtomicUsize::new(0);
            team.run(&|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(count.load(Ordering::Relaxed), 3);
        }
        team.wake();
    }

    #[test]
    fn nested_jobs_run_inline_and_concurrent_dispatchers_take_turns() {
        let team = Arc::new(Team::new(3, false));
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..50 {
                        team.run(&|_, _| {
                            team.run(&|_, _| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 50 * 3 * 3);
    }

    #[test]
    fn a_panicking_worker_panics_the_dispatcher_and_the_team_survives() {
        let team = Team::new(3, false);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(&|w, _| {
                if w == 2 {
                    panic!("worker 2 fails");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        team.run(&|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }
}
