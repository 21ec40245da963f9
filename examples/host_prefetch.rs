//! Does reading the head of a host-computed block ahead of time (while the
//! GPU runs the layers before it) shorten the block's host step?
//!
//! In a capped decode the host lane is idle while the device computes the
//! layers between two host-computed blocks (~0.7 ms on 13B at 22 GiB), and
//! host memory is then read by the copy lane alone. If the team reads the
//! first part of the next host block in that gap, the part stays in the
//! CPU's caches (hundreds of MiB of last-level cache on a server part) and
//! the step itself streams only the rest from DRAM.
//!
//! For each fraction `f`, every rep takes the next of `--images` distinct
//! `[5120, 13824]` f16 matrices (13B's down projection; more bytes together
//! than any cache), has the team read the first `f` of each worker's rows
//! (the rows that worker's part of the product reads), idles `--gap-us`,
//! then times the product. With `--copies`, pinned host-to-device copies
//! loop meanwhile, as the copy lane's do.
//!
//! ```text
//! cargo run --release --example host_prefetch -- [--images 20 --reps 16 --gap-us 700 --copies]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use djinn_kernels::matmul::matmul_on;
use djinn_kernels::team::part_aligned;
use djinn_kernels::{f16, Team};
use djinn_profiler::copy::CopyRig;
use djinn_profiler::host_layer::read_lines;
use djinn_runtime::cuda::Gpu;
use djinn_runtime::host::{HostArena, HUGE_PAGE};

const N: usize = 5120;
const K: usize = 13824;
const FRACTIONS: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0];

/// The team reads the first `frac` of each worker's rows of `w` (as `matmul`'s split assigns them).
fn prefetch(team: &Team, w: &[f16], frac: f64) {
    if frac <= 0.0 {
        return;
    }
    team.run(&|wk, n| {
        let rows = part_aligned(N, 4, wk, n);
        let take = ((rows.len() as f64 * frac).ceil() as usize).min(rows.len());
        read_lines(as_bytes(&w[rows.start * K..(rows.start + take) * K]));
    });
}

fn as_bytes(w: &[f16]) -> &[u8] {
    // SAFETY: f16 is two plain bytes; the slice is borrowed for as long as `w`.
    unsafe { std::slice::from_raw_parts(w.as_ptr().cast::<u8>(), std::mem::size_of_val(w)) }
}

fn spin(us: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Rig {
    arena: HostArena,
    stride: usize,
    images: usize,
    next: usize,
    x: Vec<f16>,
    out: Vec<f32>,
}

impl Rig {
    /// The next image's offset in the arena (the images are used in turn).
    fn next_image(&mut self) -> usize {
        let off = self.next * self.stride;
        self.next = (self.next + 1) % self.images;
        off
    }

    /// (prefetch µs, product µs) medians over `reps` for fraction `frac`.
    fn run(&mut self, frac: f64, reps: usize, gap_us: u64) -> (f64, f64) {
        let team = Team::global();
        let (mut pre, mut prod) = (Vec::new(), Vec::new());
        for r in 0..reps + self.images {
            let off = self.next_image();
            let bytes = &self.arena[off..off + N * K * 2];
            // SAFETY: the arena is page aligned and `off` a multiple of a huge page; f16 has alignment 2.
            let w: &[f16] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f16>(), N * K) };
            let t = Instant::now();
            prefetch(team, w, frac);
            let tp = t.elapsed().as_secs_f64() * 1e6;
            spin(gap_us);
            let t = Instant::now();
            matmul_on::<f16, f32>(team, &mut self.out, &self.x, w, 1, N, K);
            let tm = t.elapsed().as_secs_f64() * 1e6;
            black_box(&self.out);
            if r >= self.images {
                pre.push(tp);
                prod.push(tm);
            }
        }
        (median(pre), median(prod))
    }
}

fn main() -> Result<()> {
    let (mut images, mut reps, mut gap_us, mut copies) = (20usize, 16usize, 700u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: an integer"))
        };
        match a.as_str() {
            "--images" => images = num("--images")? as usize,
            "--reps" => reps = num("--reps")? as usize,
            "--gap-us" => gap_us = num("--gap-us")?,
            "--copies" => copies = true,
            other => bail!("unknown argument {other:?}; expected --images N, --reps N, --gap-us US or --copies"),
        }
    }
    let bytes = N * K * 2;
    let stride = bytes.div_ceil(HUGE_PAGE as usize) * HUGE_PAGE as usize;
    let arena = HostArena::zeroed((stride * images) as u64).context("allocating the images")?;
    arena.advise_huge(0, (stride * images) as u64);
    let mut rig = Rig { arena, stride, images, next: 0, x: vec![f16::from_f32(0.01); K], out: vec![0f32; N] };
    for i in 0..images {
        let off = i * stride;
        for (j, b) in rig.arena[off..off + bytes].iter_mut().enumerate() {
            *b = ((i * 7 + j * 13) % 251) as u8 & 0x3b;
        }
    }
    println!(
        "{images} images of [{N}, {K}] f16 ({:.1} MB each), team of {}, gap {gap_us} us, copies {}",
        bytes as f64 / 1e6,
        Team::global().threads(),
        if copies { "looping" } else { "off" }
    );
    let sweep = |rig: &mut Rig| {
        for &f in &FRACTIONS {
            let (pre, prod) = rig.run(f, reps, gap_us);
            let pre_mb = bytes as f64 * f / 1e6;
            println!(
                "fraction {f:.1}: prefetch {pre_mb:6.1} MB in {pre:7.1} us ({:5.1} GB/s); product {prod:7.1} us ({:5.1} GB/s of weights)",
                if pre > 0.0 { pre_mb / pre * 1e3 } else { 0.0 },
                bytes as f64 / prod / 1e3
            );
        }
    };
    if copies {
        let gpu = Gpu::open(0).context("opening GPU 0")?;
        let mut copy = CopyRig::new(&gpu, 256 << 20).context("allocating the copy loop")?;
        let ((), gbps) = copy.while_copying(256 << 20, || sweep(&mut rig)).context("looping copies")?;
        println!("copies ran at {gbps:.1} GB/s meanwhile");
    } else {
        sweep(&mut rig);
    }
    Ok(())
}
