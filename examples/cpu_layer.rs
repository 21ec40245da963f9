//! Per-op timing of one Llama layer's decode step on the host CPU (the CPU
//! twins through `CpuOps`, as a plan's `host_compute` runs it): where a
//! host-computed layer's time goes.
//!
//! ```text
//! cargo run --release --example cpu_layer -- [--hidden 5120 --inter 13824 --heads 40 --kv-heads 40
//!     --head-dim 128 --pos 512 --reps 10 --gap-us 0]
//! ```
//!
//! `--gap-us` idles that long before each rep of each op, as the host idles
//! between host-computed layers while the GPU runs the others (its worker
//! threads go to sleep); the gap is not counted. Idling before every op
//! bounds the wake-up cost from above: in a real step only the layer's first
//! op follows an idle gap.
//!
//! Weights are a constant pattern; each op reads its own weights once per
//! rep, as a decode step does (the 13B layer's 634 MB exceeds any cache).
//! No copy lane runs meanwhile, unlike a real `host_compute`.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use djinn_core::units::{align_up, ALIGN};
use djinn_core::Dtype;
use djinn_runtime::cpu::CpuOps;
use djinn_runtime::host::HostArena;
use djinn_runtime::ops::{AttnShape, Buf, Ops, RopeTable};

fn main() -> Result<()> {
    let (mut hidden, mut inter, mut heads, mut kv_heads, mut head_dim, mut pos, mut reps) =
        (5120u64, 13824u64, 40u64, 40u64, 128u64, 512u64, 10u32);
    let mut gap_us = 0u64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else { bail!("flag {} needs a value", pair[0]) };
        let v: u64 = value.parse().with_context(|| format!("{flag} {value}: expected an integer"))?;
        match flag.as_str() {
            "--hidden" => hidden = v,
            "--inter" => inter = v,
            "--heads" => heads = v,
            "--kv-heads" => kv_heads = v,
            "--head-dim" => head_dim = v,
            "--pos" => pos = v,
            "--reps" => reps = v as u32,
            "--gap-us" => gap_us = v,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let d = Dtype::F16;
    let (q_dim, kv_dim, seq) = (heads * head_dim, kv_heads * head_dim, pos + 1);
    let mut next = 0u64;
    let mut buf = |elems: u64, dtype: Dtype| {
        let b = Buf { offset: next, elems, dtype };
        next = align_up(next + b.bytes(), ALIGN);
        b
    };
    let (wq, wk, wv, wo) =
        (buf(q_dim * hidden, d), buf(kv_dim * hidden, d), buf(kv_dim * hidden, d), buf(hidden * q_dim, d));
    let (wg, wu, wd) = (buf(inter * hidden, d), buf(inter * hidden, d), buf(hidden * inter, d));
    let norm = buf(hidden, d);
    let x = buf(hidden, Dtype::F32);
    let (xn, q, k, v, attn, proj) =
        (buf(hidden, d), buf(q_dim, d), buf(kv_dim, d), buf(kv_dim, d), buf(q_dim, d), buf(hidden, d));
    let (gate, up) = (buf(inter, d), buf(inter, d));
    let (kc, vc) = (buf(seq * kv_dim, d), buf(seq * kv_dim, d));
    let scores = buf(heads * seq, Dtype::F32);
    let mut arena = HostArena::zeroed(next).context("allocating the arena")?;
    arena.fill(0x2c);
    arena[x.offset as usize..(x.offset + x.bytes()) as usize].fill(0);
    let mut ops = CpuOps::new(&mut arena);
    let shape = AttnShape {
        tokens: 1,
        pos0: pos,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rope: RopeTable::unscaled(head_dim, 1e4),
        window: None,
        header: None,
    };
    let mut total = 0.0;
    let mut time = |name: &str, bytes: u64, f: &mut dyn FnMut(&mut CpuOps) -> Result<()>| -> Result<()> {
        f(&mut ops)?;
        let mut us = 0.0;
        for _ in 0..reps {
            std::thread::sleep(std::time::Duration::from_micros(gap_us));
            let t = Instant::now();
            f(&mut ops)?;
            us += t.elapsed().as_secs_f64() * 1e6;
        }
        let us = us / reps as f64;
        total += us;
        println!("{name:<22} {us:>10.1} us {:>8.1} GB/s", bytes as f64 / us / 1e3);
        Ok(())
    };
    let mm = |n: u64, k: u64| n * k * 2;
    time("rmsnorm", hidden * 6, &mut |o| Ok(o.rmsnorm(xn, x, norm, 1, hidden, 1e-5)?))?;
    time("matmul q", mm(q_dim, hidden), &mut |o| Ok(o.matmul(q, xn, wq, 1, q_dim, hidden)?))?;
    time("matmul k", mm(kv_dim, hidden), &mut |o| Ok(o.matmul(k, xn, wk, 1, kv_dim, hidden)?))?;
    time("matmul v", mm(kv_dim, hidden), &mut |o| Ok(o.matmul(v, xn, wv, 1, kv_dim, hidden)?))?;
    time("rope", (q_dim + kv_dim) * 4, &mut |o| Ok(o.rope(q, k, shape)?))?;
    time("kv_store", kv_dim * 8, &mut |o| Ok(o.kv_store(kc, vc, k, v, shape)?))?;
    time("attention", seq * kv_dim * 4, &mut |o| Ok(o.attention(attn, q, kc, vc, scores, shape)?))?;
    time("matmul o", mm(hidden, q_dim), &mut |o| Ok(o.matmul(proj, attn, wo, 1, hidden, q_dim)?))?;
    time("add", hidden * 6, &mut |o| Ok(o.add(x, proj, hidden)?))?;
    time("matmul gate", mm(inter, hidden), &mut |o| Ok(o.matmul(gate, xn, wg, 1, inter, hidden)?))?;
    time("matmul up", mm(inter, hidden), &mut |o| Ok(o.matmul(up, xn, wu, 1, inter, hidden)?))?;
    time("silu_mul", inter * 6, &mut |o| Ok(o.silu_mul(gate, up, inter)?))?;
    time("matmul down", mm(hidden, inter), &mut |o| Ok(o.matmul(proj, gate, wd, 1, hidden, inter)?))?;
    println!("{:<22} {total:>10.1} us", "one layer");
    Ok(())
}
