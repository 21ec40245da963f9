//! How fast the CPU twin's f16 matrix-vector product streams weights.
//!
//! A decode step on the host CPU is a chain of `m = 1` products
//! (`djinn_kernels::matmul_f16`) whose cost is reading each weight once, so
//! the figure that matters is GB/s of weights read, against what the memory
//! can deliver: a plain parallel read of the same bytes is printed as the
//! ceiling. Shapes are Llama 2 13B's projections (`[out, in]`, as stored).
//!
//! Each shape's weight is replicated over a working set of `--working-set-mib`
//! (default 2048 MiB) and the products rotate through the copies, so every
//! product reads from DRAM as a decode step over a large model does, not from
//! a last-level cache that may hold a whole 50–140 MB matrix. Times are the
//! median over at least `--seconds` (default 1) and 5 products, after one warm-up pass.
//!
//! ```text
//! cargo run --release --example gemv_bench [-- --seconds 2 --working-set-mib 4096]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use djinn_kernels::simd::simd_available;
use djinn_kernels::{f16, matmul_f16, Rng};
use rayon::prelude::*;

/// `(name, n = out_features, k = in_features)`.
const SHAPES: [(&str, usize, usize); 3] = [
    ("13824x5120 (gate/up proj)", 13824, 5120),
    ("5120x13824 (down proj)", 5120, 13824),
    ("5120x5120 (q/k/v/o proj)", 5120, 5120),
];

struct Config {
    seconds: f64,
    working_set: usize,
}

fn parse_args() -> Result<Config> {
    let mut cfg = Config { seconds: 1.0, working_set: 2048 << 20 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => cfg.seconds = value("--seconds")?.parse().context("--seconds: a number")?,
            "--working-set-mib" => {
                cfg.working_set =
                    value("--working-set-mib")?.parse::<usize>().context("--working-set-mib: an integer")? << 20
            }
            // `cargo bench`-style harness flags are accepted and ignored.
            "--bench" => {}
            other => bail!("unknown argument {other:?}; expected --seconds S or --working-set-mib N"),
        }
    }
    Ok(cfg)
}

/// Median seconds of `f` over at least `min_time` and 5 calls, after one warm-up call.
fn median_secs(min_time: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || start.elapsed() < min_time {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `copies` weight matrices of `n * k` f16, tiled from a small random block
/// (the values do not affect speed; the copies' addresses are what defeat the cache).
fn weights(n: usize, k: usize, copies: usize) -> Vec<Vec<f16>> {
    let mut rng = Rng::new(7);
    let tile: Vec<f16> = rng.normals(1 << 16, 0.02).into_iter().map(f16::from_f32).collect();
    let mut m = Vec::with_capacity(n * k);
    while m.len() < n * k {
        let take = tile.len().min(n * k - m.len());
        m.extend_from_slice(&tile[..take]);
    }
    vec![m; copies]
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn main() -> Result<()> {
    let cfg = parse_args()?;
    let min_time = Duration::from_secs_f64(cfg.seconds);
    let threads = rayon::current_num_threads();
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    println!(
        "gemv_bench: f16 matmul with m=1 (djinn_kernels::matmul_f16), {threads} threads (all) vs 1; \
         SIMD (AVX2+FMA+F16C) {}; working set {} MiB per shape",
        if simd_available() { "on" } else { "off (portable loop)" },
        cfg.working_set >> 20
    );
    let mut ceiling = None;
    for (name, n, k) in SHAPES {
        let bytes = n * k * 2;
        let copies = cfg.working_set.div_ceil(bytes).max(2);
        let w = weights(n, k, copies);
        let mut rng = Rng::new(1);
        let x: Vec<f16> = rng.normals(k, 1.0).into_iter().map(f16::from_f32).collect();
        let mut out = vec![f16::ZERO; n];
        let mut time = |pool: Option<&rayon::ThreadPool>| {
            let mut next = 0;
            let mut one = || {
                matmul_f16(&mut out, &x, &w[next % copies], 1, n, k);
                black_box(&out);
                next += 1;
            };
            match pool {
                Some(p) => p.install(|| median_secs(min_time, &mut one)),
                None => median_secs(min_time, &mut one),
            }
        };
        let all = time(None);
        let one = time(Some(&single));
        println!(
            "gemv f16 {name}: {:.1} MB of weights; {threads} threads {:.2} GB/s ({:.2} ms), 1 thread {:.2} GB/s ({:.2} ms)",
            bytes as f64 / 1e6,
            gbps(bytes, all),
            all * 1e3,
            gbps(bytes, one),
            one * 1e3
        );
        if ceiling.is_none() {
            ceiling = Some(read_ceiling(&w, &single, min_time));
        }
    }
    if let Some((all, one)) = ceiling {
        println!(
            "read ceiling (sum of the same bytes as u64, same rotation): {threads} threads {all:.2} GB/s, 1 thread {one:.2} GB/s"
        );
    }
    Ok(())
}

/// GB/s of a plain parallel read of the weights (all threads, then one): what memory delivers.
fn read_ceiling(w: &[Vec<f16>], single: &rayon::ThreadPool, min_time: Duration) -> (f64, f64) {
    let bytes = w[0].len() * 2;
    let time = |pool: Option<&rayon::ThreadPool>| {
        let mut next = 0;
        let mut one = || {
            let m = &w[next % w.len()];
            // SAFETY: every bit pattern is a valid u64, and `align_to` hands out only
            // aligned whole words (the unaligned ends, under 8 bytes each, are skipped).
            let (_, words, _) = unsafe { m.align_to::<u64>() };
            let s: u64 = words.par_chunks(1 << 14).map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v))).sum();
            black_box(s);
            next += 1;
        };
        match pool {
            Some(p) => p.install(|| median_secs(min_time, &mut one)),
            None => median_secs(min_time, &mut one),
        }
    };
    let all = time(None);
    let one = time(Some(single));
    (gbps(bytes, all), gbps(bytes, one))
}
