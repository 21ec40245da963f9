//! Per-op timing of the CUDA backend's kernels at one Llama layer's shapes,
//! for the decode shape (1 token at position `--pos`) and the prefill shape
//! (`--prompt-len` tokens from position 0): where a layer's time goes, and
//! how close each op comes to the device's memory bandwidth.
//!
//! ```text
//! cargo run --release --example cuda_ops -- [--hidden 5120 --inter 13824 --heads 40 --kv-heads 40
//!     --head-dim 128 --vocab 32000 --prompt-len 512 --pos 512 --reps 50 --random 0 --prefill 1 --lt 0]
//! ```
//!
//! `--prefill 0` runs the decode shape alone; `--lt N` times up to N of
//! cuBLASLt's algorithms for each prefill product beside cuBLAS's default.
//! `--random 1` fills the weights and the residual stream with random values
//! (by default the weights are one constant and the residual stream zeros,
//! so every product multiplies zero activations).
//!
//! First a 1 GiB device-to-device copy sets the ceiling (bytes read plus
//! bytes written per second). Then each op runs `reps` times after one
//! untimed run, timed with CUDA events around the batch; decode ops run
//! fused (the GEMV kernels and their epilogues, split attention: what a plan
//! runs) and unfused (cuBLAS and one kernel per op: `DJINN_FUSED=0`), side
//! by side; prefill runs with the products of one input batched (what a plan
//! runs) and one by one (`DJINN_BATCHED=0`). The weights rotate among enough
//! copies that the 60 MB L2 cannot serve a repeat from cache. GB/s counts the bytes each op must read and
//! write once; `% d2d` sets that beside the copy's figure. Last, prefill
//! attention alone at `--prompt-len` and 4096 tokens: the flash kernel
//! against the cuBLAS path it replaced, with TFLOP/s.

use anyhow::{bail, Context, Result};
use djinn_core::units::{align_up, ALIGN};
use djinn_core::Dtype;
use djinn_kernels::{Rng, SampleParams};
use djinn_runtime::cuda::{CudaOps, Event};
use djinn_runtime::ops::{AttnShape, Buf, Ops, RopeTable};

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
    /// Random weights and residual stream instead of one constant and zeros.
    random: bool,
    /// Run the prefill shape, the token choice and prefill attention too (else decode only).
    prefill: bool,
    /// cuBLASLt algorithms to time for each prefill product (0: none).
    lt: u64,
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
        random: false,
        prefill: true,
        lt: 0,
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
            "--random" => s.random = v != 0,
            "--prefill" => s.prefill = v != 0,
            "--lt" => s.lt = v,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(s)
}

/// Fills the weights (`0..weights_end`) with f16 normals of scale 0.02 and
/// the residual stream `x` with f32 normals: the operands a checkpoint and a
/// prompt give the products (constant or zero operands make the tensor cores
/// draw less power, and a power-limited device clocks higher on them).
fn randomize(ops: &mut CudaOps, weights_end: u64, x: Buf) -> Result<()> {
    const TILE: u64 = 64 << 20;
    let mut rng = Rng::new(11);
    let tile: Vec<u8> = rng
        .normals((TILE / 2) as usize, 0.02)
        .into_iter()
        .flat_map(|v| djinn_kernels::f16::from_f32(v).to_le_bytes())
        .collect();
    let mut at = 0;
    while at < weights_end {
        let n = TILE.min(weights_end - at);
        ops.upload(at, &tile[..n as usize])?;
        at += n;
    }
    let xs: Vec<u8> = rng.normals(x.elems as usize, 1.0).into_iter().flat_map(f32::to_le_bytes).collect();
    ops.upload(x.offset, &xs)?;
    Ok(())
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

/// How one pass over the layer's ops runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Decode on the GEMV kernels and their epilogues, split attention (what plans run).
    Fused,
    /// Decode on cuBLAS and one kernel per op (`DJINN_FUSED=0`).
    Unfused,
    /// Prefill, products of one input batched or not (`DJINN_BATCHED=0`).
    Prefill { batched: bool },
}

/// One layer's weights (and the LM head), one copy of several.
#[derive(Clone, Copy)]
struct Weights {
    q: Buf,
    k: Buf,
    v: Buf,
    o: Buf,
    gate: Buf,
    up: Buf,
    down: Buf,
    head: Buf,
}

/// Microseconds per call of `f(ops, i)` over `reps` calls (`i` the call's
/// index, for rotating inputs), timed with events after one untimed call.
fn time(ops: &mut CudaOps, reps: u32, mut f: impl FnMut(&mut CudaOps, usize) -> Result<()>) -> Result<f64> {
    f(ops, 0)?;
    let (start, end) = (Event::new(ops.gpu(), true)?, Event::new(ops.gpu(), true)?);
    start.record(ops.stream())?;
    for i in 0..reps as usize {
        f(ops, i + 1)?;
    }
    end.record(ops.stream())?;
    ops.synchronize()?;
    Ok(end.ms_since(&start)? as f64 * 1e3 / reps as f64)
}

fn main() -> Result<()> {
    let s = parse()?;
    let d = Dtype::F16;
    let (h, q_dim, kv_dim, inter) = (s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim, s.inter);
    let t = s.prompt_len;
    let seq = s.pos.max(t) + 1;
    let mut c = Carve(0);
    let layer_bytes = (2 * q_dim * h + 2 * kv_dim * h + 3 * inter * h + s.vocab * h) * 2;
    // Enough copies that one pass over all of them is well over the L2.
    let copies = (256u64 << 20).div_ceil(layer_bytes).max(2) as usize;
    let sets: Vec<Weights> = (0..copies)
        .map(|_| Weights {
            q: c.buf(q_dim * h, d),
            k: c.buf(kv_dim * h, d),
            v: c.buf(kv_dim * h, d),
            o: c.buf(h * q_dim, d),
            gate: c.buf(inter * h, d),
            up: c.buf(inter * h, d),
            down: c.buf(h * inter, d),
            head: c.buf(s.vocab * h, d),
        })
        .collect();
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
    let token = c.buf(1, Dtype::F32);
    let header = c.buf(djinn_core::activations::PASS_WORDS, Dtype::F32);
    let k_cache = c.buf(seq * kv_dim, d);
    let v_cache = c.buf(seq * kv_dim, d);
    let scores = c.buf(s.heads * t * seq, Dtype::F32);
    const COPY: u64 = 1 << 30;
    let (copy_src, copy_dst) = (c.buf(COPY / 2, d), c.buf(COPY / 2, d));
    let mut ops = CudaOps::standalone(c.0).context("opening the GPU")?;
    // 0x2c2c is f16 ~0.07: small enough that nothing overflows through the ops.
    ops.fill(0, c.0, 0x2c)?;
    ops.fill(x.offset, x.bytes(), 0)?;
    if s.random {
        randomize(&mut ops, norm.offset, x)?;
    }
    let us = time(&mut ops, 20, |o, _| Ok(o.copy_within(copy_dst.offset, copy_src.offset, COPY)?))?;
    let d2d = (2 * COPY) as f64 / us / 1e3;
    println!("device-to-device copy of {} MiB: {us:.1} us, {d2d:.0} GB/s (read + written)", COPY >> 20);
    println!("weights rotate among {copies} copies ({:.0} MiB each)", layer_bytes as f64 / (1 << 20) as f64);
    println!();
    println!("{:<28} {:<30} {:>10} {:>9} {:>7}", "op", "shape", "us/call", "GB/s", "% d2d");
    let w = |i: usize| sets[i % copies];
    let phases: &[(&str, u64, u64)] =
        if s.prefill { &[("decode", 1, s.pos), ("prefill", t, 0)] } else { &[("decode", 1, s.pos)] };
    for &(phase, n, pos0) in phases {
        let shape = AttnShape {
            tokens: n,
            pos0,
            num_heads: s.heads,
            num_kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            rope: RopeTable::unscaled(s.head_dim, 1e4),
            window: None,
            // As the forward pass runs them: the position read from the pass header.
            header: Some(header),
        };
        ops.write_pass(header, pos0, n)?;
        // Bytes a product must move: weights once, inputs and outputs once.
        let mm = |nn: u64, kk: u64| ((n * kk + nn * kk + n * nn) * 2) as f64;
        // Decode: what a plan runs (the GEMV kernels), then cuBLAS. Prefill: what a plan runs (cuBLAS products, those of one input and
        // shape batched; the fused RoPE + cache store, flash attention), then
        // with the products one by one.
        let modes: &[Mode] = if n <= 8 {
            &[Mode::Fused, Mode::Unfused]
        } else {
            &[Mode::Prefill { batched: true }, Mode::Prefill { batched: false }]
        };
        for &mode in modes {
            ops.set_fused(mode != Mode::Unfused);
            ops.set_batched(mode != Mode::Prefill { batched: false });
            let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
            let r = s.reps;
            let mut row = |op: &str, dims: String, us: f64, bytes: f64| rows.push((op.into(), dims, us, bytes));
            let us = time(&mut ops, r, |o, _| Ok(o.rmsnorm(xn, x, norm, n, h, 1e-5)?))?;
            row("rmsnorm", format!("{n}x{h}"), us, (n * h * 6) as f64);
            let us = time(&mut ops, r, |o, i| {
                let w = w(i);
                Ok(o.qkv([q, k, v], xn, [w.q, w.k, w.v], n, [q_dim, kv_dim, kv_dim], h)?)
            })?;
            row("qkv", format!("{n}x{h} . ({q_dim}+2x{kv_dim})x{h}"), us, mm(q_dim + 2 * kv_dim, h));
            let us = time(&mut ops, r, |o, _| Ok(o.rope_kv_store(q, k, v, k_cache, v_cache, shape)?))?;
            row(
                "rope_kv_store",
                format!("{n}x({}+{})x{}", s.heads, s.kv_heads, s.head_dim),
                us,
                ((q_dim * 2 + kv_dim * 3) * n * 2) as f64,
            );
            let us = time(&mut ops, r, |o, _| Ok(o.attention(attn, q, k_cache, v_cache, scores, shape)?))?;
            row(
                "attention",
                format!("{n} q over {} keys", pos0 + n),
                us,
                ((pos0 + n) * kv_dim * 4 + n * q_dim * 4) as f64,
            );
            // The folded form a plan's forward pass runs (Ops::rope_attention): one launch fewer.
            let us = time(&mut ops, r, |o, _| Ok(o.rope_attention(attn, q, k, v, k_cache, v_cache, scores, shape)?))?;
            row(
                "rope + attention",
                format!("{n} q over {} keys", pos0 + n),
                us,
                ((pos0 + n) * kv_dim * 4 + n * q_dim * 4) as f64,
            );
            let us = time(&mut ops, r, |o, i| Ok(o.matmul_residual(x, proj, attn, w(i).o, n, h, q_dim)?))?;
            row("o_proj + residual", format!("{n}x{q_dim} . {h}x{q_dim}"), us, mm(h, q_dim));
            let us = time(&mut ops, r, |o, i| {
                let w = w(i);
                Ok(o.gate_up_silu(gate, up, xn, w.gate, w.up, n, inter, h)?)
            })?;
            row("gate_up_silu", format!("{n}x{h} . 2x{inter}x{h}"), us, mm(2 * inter, h));
            let us = time(&mut ops, r, |o, i| Ok(o.matmul_residual(x, proj, gate, w(i).down, n, h, inter)?))?;
            row("down + residual", format!("{n}x{inter} . {h}x{inter}"), us, mm(h, inter));
            let us = time(&mut ops, r, |o, i| Ok(o.matmul(logits, xn, w(i).head, 1, s.vocab, h)?))?;
            row(
                "lm_head (f32 out)",
                format!("1x{h} . {}x{h}", s.vocab),
                us,
                ((h + s.vocab * h) * 2 + s.vocab * 4) as f64,
            );
            let how = match mode {
                Mode::Prefill { batched: true } => {
                    "cuBLAS products (batched where they share x), fused RoPE + store, flash"
                }
                Mode::Prefill { batched: false } => "cuBLAS products one by one, fused RoPE + store, flash attention",
                Mode::Fused => "fused: GEMV kernels",
                Mode::Unfused => "unfused: cuBLAS",
            };
            println!("-- {phase} ({n} tokens at position {pos0}), {how}");
            let mut layer = 0.0;
            for (op, dims, us, bytes) in &rows {
                let gbps = bytes / us / 1e3;
                println!("{op:<28} {dims:<30} {us:>10.1} {gbps:>9.0} {:>6.0}%", 100.0 * gbps / d2d);
                // The layer as the forward pass runs it: RoPE folded into attention.
                layer += match op.as_str() {
                    "rmsnorm" => 2.0 * us,
                    "lm_head (f32 out)" | "rope_kv_store" | "attention" => 0.0,
                    _ => *us,
                };
            }
            println!("{:<60} {layer:>9.1}", "one layer (sum of its ops)");
            // The layer's ops back to back, as a plan issues them: launch
            // gaps included; then with RoPE and the store in a launch of
            // their own (before they were folded), and without programmatic launches.
            for (fold_rope, pdl) in [(true, true), (false, true), (true, false)] {
                ops.set_pdl(pdl);
                let us = time(&mut ops, r, |o, i| {
                    let w = w(i);
                    o.rmsnorm(xn, x, norm, n, h, 1e-5)?;
                    o.qkv([q, k, v], xn, [w.q, w.k, w.v], n, [q_dim, kv_dim, kv_dim], h)?;
                    if fold_rope {
                        o.rope_attention(attn, q, k, v, k_cache, v_cache, scores, shape)?;
                    } else {
                        o.rope_kv_store(q, k, v, k_cache, v_cache, shape)?;
                        o.attention(attn, q, k_cache, v_cache, scores, shape)?;
                    }
                    o.matmul_residual(x, proj, attn, w.o, n, h, q_dim)?;
                    o.rmsnorm(xn, x, norm, n, h, 1e-5)?;
                    o.gate_up_silu(gate, up, xn, w.gate, w.up, n, inter, h)?;
                    Ok(o.matmul_residual(x, proj, gate, w.down, n, h, inter)?)
                })?;
                let bytes = (layer_bytes - s.vocab * h * 2) as f64;
                let what = format!(
                    "one layer, back to back{}{}",
                    if fold_rope { "" } else { ", RoPE apart" },
                    if pdl { "" } else { ", no PDL" }
                );
                println!("{what:<60} {us:>9.1} {:>9.0} {:>6.0}%", bytes / us / 1e3, 100.0 * bytes / us / 1e3 / d2d);
            }
            ops.set_pdl(true);
        }
    }
    ops.set_fused(true);
    ops.set_batched(true);
    if !s.prefill {
        return Ok(());
    }
    if s.lt > 0 {
        lt_sweep(&mut ops, &s, sets[0], xn, gate, [q, proj], s.lt as usize)?;
    }
    token_choice(&mut ops, logits, token, s.vocab, s.reps)?;
    drop(ops);
    prefill_attention(&s)
}

/// Each prefill product's shape through `Blas::matmul` (cuBLAS's default
/// choice, what plans run) and through each of up to `count` cuBLASLt
/// algorithms, fastest first.
fn lt_sweep(
    ops: &mut CudaOps,
    s: &Shape,
    w: Weights,
    xn: Buf,
    gate: Buf,
    [q, proj]: [Buf; 2],
    count: usize,
) -> Result<()> {
    let (h, q_dim, inter, t) = (s.hidden, s.heads * s.head_dim, s.inter, s.prompt_len);
    println!();
    println!("-- prefill products ({t} rows): cuBLAS's default against cuBLASLt's candidates");
    for (what, out, x, wt, n, k) in [
        ("q (one of q/k/v)", q, xn, w.q, q_dim, h),
        ("o_proj", proj, xn, w.o, h, q_dim),
        ("gate (one of two)", gate, xn, w.gate, inter, h),
        ("down", proj, gate, w.down, h, inter),
    ] {
        let base = time(ops, s.reps, |o, _| Ok(o.matmul(out, x, wt, t, n, k)?))?;
        let tf = |us: f64| 2.0 * (t * n * k) as f64 / us / 1e6;
        let mut c = ops.lt_candidates(out, x, wt, (t, n, k), count, s.reps)?;
        c.sort_by(|a, b| a.us.total_cmp(&b.us));
        let list: Vec<String> = c
            .iter()
            .take(6)
            .map(|c| format!("#{} {:.1} us ({:.2} waves, {} KiB)", c.rank, c.us, c.waves, c.workspace >> 10))
            .collect();
        println!(
            "{what:<18} {t}x{k} . {n}x{k}: default {base:.1} us ({:.0} TFLOP/s); best {}",
            tf(base),
            list.join(", ")
        );
    }
    Ok(())
}

/// Choosing the next token on the device from `vocab` random logits (normal,
/// scale 3: every token carries mass, the sampling kernel's hardest row):
/// the argmax and the sampling kernel under typical settings, one kernel each.
fn token_choice(ops: &mut CudaOps, logits: Buf, token: Buf, vocab: u64, reps: u32) -> Result<()> {
    let row: Vec<u8> = Rng::new(1).normals(vocab as usize, 3.0).iter().flat_map(|v| v.to_le_bytes()).collect();
    ops.upload(logits.offset, &row)?;
    println!();
    println!("-- the next token from {vocab} f32 logits");
    let us = time(ops, reps, |o, _| Ok(o.argmax(token, logits, vocab)?))?;
    println!("{:<60} {us:>9.1}", "argmax");
    let t = |temperature: f32| SampleParams { temperature, ..SampleParams::GREEDY };
    for (what, p) in [
        ("sample: temperature 1", t(1.0)),
        ("sample: temperature 0.7, top-p 0.9", SampleParams { top_p: 0.9, ..t(0.7) }),
        ("sample: top-k 40, top-p 0.95, min-p 0.05", SampleParams { top_k: 40, top_p: 0.95, min_p: 0.05, ..t(0.8) }),
    ] {
        let us = time(ops, reps, |o, i| Ok(o.sample(token, logits, vocab, &p, (i % 97) as f32 / 97.0)?))?;
        println!("{what:<60} {us:>9.1}");
    }
    Ok(())
}

// ---- Prefill attention: the flash kernel against cuBLAS + softmax ----

/// Prefill attention at the layer's head shape for `--prompt-len` tokens
/// and for 4096, both ways through `Ops::attention`: `attn_prefill.cu`
/// (`set_flash(true)`, what plans run) and the two cuBLAS GEMMs around
/// `attn_softmax.cu` (`set_flash(false)`, with its `[heads, t, t]` scratch).
/// Random inputs; each runs `reps` times after one untimed run, timed with
/// CUDA events. TFLOP/s counts the causal work, `4 · heads · head_dim ·
/// t(t+1)/2` (QKᵀ and PV over the visible keys only); max |diff| is between
/// the two paths' outputs.
fn prefill_attention(s: &Shape) -> Result<()> {
    use djinn_kernels::{f16, Rng};
    let d = Dtype::F16;
    let (q_dim, kv_dim) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    println!();
    println!(
        "-- prefill attention, {} heads over {} kv heads of {}: attn_prefill.cu against cuBLAS + attn_softmax.cu",
        s.heads, s.kv_heads, s.head_dim
    );
    println!(
        "{:<8} {:>10} {:>9} {:>12} {:>9} {:>8} {:>12} {:>11}",
        "tokens", "flash us", "TFLOP/s", "cuBLAS us", "TFLOP/s", "speedup", "scratch MiB", "max |diff|"
    );
    for t in [s.prompt_len, 4096] {
        let mut c = Carve(0);
        let (q, kc, vc) = (c.buf(t * q_dim, d), c.buf(t * kv_dim, d), c.buf(t * kv_dim, d));
        let (out_flash, out_blas) = (c.buf(t * q_dim, d), c.buf(t * q_dim, d));
        let scores = c.buf(s.heads * t * t.div_ceil(8) * 8, Dtype::F32);
        let mut ops = CudaOps::standalone(c.0).context("opening the GPU")?;
        let mut rng = Rng::new(t);
        for b in [q, kc, vc] {
            let v = rng.normals(b.elems as usize, 1.0);
            ops.upload(
                b.offset,
                &v.iter().flat_map(|x| f16::from_f32(*x).to_bits().to_le_bytes()).collect::<Vec<_>>(),
            )?;
        }
        let shape = AttnShape {
            tokens: t,
            pos0: 0,
            num_heads: s.heads,
            num_kv_heads: s.kv_heads,
            head_dim: s.head_dim,
            rope: RopeTable::unscaled(s.head_dim, 1e4),
            window: None,
            header: None,
        };
        ops.set_flash(true);
        let flash = time(&mut ops, s.reps, |o, _| Ok(o.attention(out_flash, q, kc, vc, scores, shape)?))?;
        ops.set_flash(false);
        let blas = time(&mut ops, s.reps, |o, _| Ok(o.attention(out_blas, q, kc, vc, scores, shape)?))?;
        let halves = |raw: Vec<u8>| -> Vec<f32> {
            raw.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        };
        let (a, b) = (
            halves(ops.download(out_flash.offset, out_flash.bytes())?),
            halves(ops.download(out_blas.offset, out_blas.bytes())?),
        );
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        let flops = 4.0 * (s.heads * s.head_dim) as f64 * (t * (t + 1) / 2) as f64;
        let tflops = |us: f64| flops / us / 1e6;
        println!(
            "{t:<8} {flash:>10.1} {:>9.1} {blas:>12.1} {:>9.1} {:>7.2}x {:>12.1} {diff:>11.2e}",
            tflops(flash),
            tflops(blas),
            blas / flash,
            scores.bytes() as f64 / (1u64 << 20) as f64
        );
    }
    Ok(())
}
