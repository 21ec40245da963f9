//! Per-op timing of the CUDA backend's kernels at one Llama layer's shapes,
//! for the decode shape (1 token at position `--pos`) and the prefill shape
//! (`--prompt-len` tokens from position 0): where a layer's time goes.
//!
//! ```text
//! cargo run --release --example cuda_ops -- [--hidden 5120 --inter 13824 --heads 40 --kv-heads 40
//!     --head-dim 128 --vocab 32000 --prompt-len 512 --pos 512 --reps 50]
//! ```
//!
//! Each op runs `reps` times back to back on the compute stream after one
//! untimed run; the time is wall clock around the batch, after a stream
//! synchronise at both ends, so it is device time once launches are queued
//! faster than they run (true for every op here but the smallest). Weights
//! are a constant pattern (timing does not depend on values); bytes/s counts
//! the weights and activations each op must read and write once.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use djinn_core::units::{align_up, ALIGN};
use djinn_core::Dtype;
use djinn_runtime::cuda::CudaOps;
use djinn_runtime::ops::{AttnShape, Buf, Ops};

struct Shape {
    hidden: u64,
    inter: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    vocab: u64,
    prompt_len: u64,
    pos: u64,
    reps: u32,
}

fn parse() -> Result<Shape> {
    let mut s = Shape {
        hidden: 5120,
        inter: 13824,
        heads: 40,
        kv_heads: 40,
        head_dim: 128,
        vocab: 32000,
        prompt_len: 512,
        pos: 512,
        reps: 50,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else { bail!("flag {} needs a value", pair[0]) };
        let v: u64 = value.parse().with_context(|| format!("{flag} {value}: expected an integer"))?;
        match flag.as_str() {
            "--hidden" => s.hidden = v,
            "--inter" => s.inter = v,
            "--heads" => s.heads = v,
            "--kv-heads" => s.kv_heads = v,
            "--head-dim" => s.head_dim = v,
            "--vocab" => s.vocab = v,
            "--prompt-len" => s.prompt_len = v,
            "--pos" => s.pos = v,
            "--reps" => s.reps = v as u32,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(s)
}

/// Bump allocator over the standalone arena.
struct Carve(u64);
impl Carve {
    fn buf(&mut self, elems: u64, dtype: Dtype) -> Buf {
        let b = Buf { offset: self.0, elems, dtype };
        self.0 = align_up(self.0 + b.bytes(), ALIGN);
        b
    }
}

fn time(ops: &mut CudaOps, reps: u32, mut f: impl FnMut(&mut CudaOps) -> Result<()>) -> Result<f64> {
    f(ops)?;
    ops.synchronize()?;
    let t = Instant::now();
    for _ in 0..reps {
        f(ops)?;
    }
    ops.synchronize()?;
    Ok(t.elapsed().as_secs_f64() * 1e6 / reps as f64)
}

fn main() -> Result<()> {
    let s = parse()?;
    let d = Dtype::F16;
    let (h, q_dim, kv_dim, inter) = (s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim, s.inter);
    let t = s.prompt_len;
    let seq = s.pos.max(t) + 1;
    let mut c = Carve(0);
    let w_q = c.buf(q_dim * h, d);
    let w_kv = c.buf(kv_dim * h, d);
    let w_gate = c.buf(inter * h, d);
    let w_down = c.buf(h * inter, d);
    let w_head = c.buf(s.vocab * h, d);
    let norm = c.buf(h, d);
    let x = c.buf(t * h, Dtype::F32);
    let xn = c.buf(t * h, d);
    let q = c.buf(t * q_dim, d);
    let k = c.buf(t * kv_dim, d);
    let v = c.buf(t * kv_dim, d);
    let attn = c.buf(t * q_dim, d);
    let proj = c.buf(t * h, d);
    let gate = c.buf(t * inter, d);
    let up = c.buf(t * inter, d);
    let logits = c.buf(s.vocab, Dtype::F32);
    let k_cache = c.buf(seq * kv_dim, d);
    let v_cache = c.buf(seq * kv_dim, d);
    let scores = c.buf(s.heads * t * seq, Dtype::F32);
    let mut ops = CudaOps::standalone(c.0).context("opening the GPU")?;
    // 0x2c2c is f16 ~0.07: small enough that nothing overflows through the ops.
    ops.fill(0, c.0, 0x2c)?;
    ops.fill(x.offset, x.bytes(), 0)?;
    println!("op                         shape                          us/call      GB/s");
    for (phase, n, pos0) in [("decode", 1u64, s.pos), ("prefill", t, 0)] {
        let shape = AttnShape {
            tokens: n,
            pos0,
            num_heads: s.heads,
            num_kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            rope_theta: 1e4,
        };
        let mm = |m: u64, nn: u64, kk: u64| ((m * kk + nn * kk + m * nn) * 2) as f64;
        let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
        let mut row = |op: &str, dims: String, us: f64, bytes: f64| rows.push((op.into(), dims, us, bytes / us / 1e3));
        let r = s.reps;
        let us = time(&mut ops, r, |o| Ok(o.rmsnorm(xn, x, norm, n, h, 1e-5)?))?;
        row("rmsnorm", format!("{n}x{h}"), us, (n * h * 6) as f64);
        let us = time(&mut ops, r, |o| Ok(o.matmul(q, xn, w_q, n, q_dim, h)?))?;
        row("matmul q/o", format!("{n}x{h} . {q_dim}x{h}"), us, mm(n, q_dim, h));
        let us = time(&mut ops, r, |o| Ok(o.matmul(k, xn, w_kv, n, kv_dim, h)?))?;
        row("matmul k/v", format!("{n}x{h} . {kv_dim}x{h}"), us, mm(n, kv_dim, h));
        let us = time(&mut ops, r, |o| Ok(o.rope(q, k, shape)?))?;
        row("rope", format!("{n}x({}+{})x{}", s.heads, s.kv_heads, s.head_dim), us, ((q_dim + kv_dim) * n * 4) as f64);
        let us = time(&mut ops, r, |o| Ok(o.kv_store(k_cache, v_cache, k, v, shape)?))?;
        row("kv_store", format!("{n}x{kv_dim}"), us, (n * kv_dim * 8) as f64);
        let us = time(&mut ops, r, |o| Ok(o.attention(attn, q, k_cache, v_cache, scores, shape)?))?;
        row("attention", format!("{n} q over {} keys", pos0 + n), us, ((pos0 + n) * kv_dim * 4 + n * q_dim * 4) as f64);
        let us = time(&mut ops, r, |o| Ok(o.add(x, proj, n * h)?))?;
        row("add", format!("{}", n * h), us, (n * h * 10) as f64);
        let us = time(&mut ops, r, |o| Ok(o.matmul(gate, xn, w_gate, n, inter, h)?))?;
        row("matmul gate/up", format!("{n}x{h} . {inter}x{h}"), us, mm(n, inter, h));
        let us = time(&mut ops, r, |o| Ok(o.silu_mul(gate, up, n * inter)?))?;
        row("silu_mul", format!("{}", n * inter), us, (n * inter * 6) as f64);
        let us = time(&mut ops, r, |o| Ok(o.matmul(proj, gate, w_down, n, h, inter)?))?;
        row("matmul down", format!("{n}x{inter} . {h}x{inter}"), us, mm(n, h, inter));
        let us = time(&mut ops, r, |o| Ok(o.matmul(logits, xn, w_head, 1, s.vocab, h)?))?;
        row("matmul lm_head (f32 out)", format!("1x{h} . {}x{h}", s.vocab), us, mm(1, s.vocab, h));
        println!("-- {phase} ({n} tokens at position {pos0})");
        let mut layer = 0.0;
        for (op, dims, us, gbps) in &rows {
            println!("{op:<26} {dims:<30} {us:>9.1} {gbps:>9.1}");
            layer += match op.as_str() {
                "rmsnorm" | "add" | "matmul gate/up" | "matmul q/o" => 2.0 * us,
                "matmul k/v" => 2.0 * us,
                "matmul lm_head (f32 out)" => 0.0,
                _ => *us,
            };
        }
        println!("one layer (sum of its ops)                                {layer:>9.1}");
    }
    Ok(())
}
