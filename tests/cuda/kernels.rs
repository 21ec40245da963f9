//! Each CUDA kernel against its CPU twin in `djinn_kernels`, f16 and bf16,
//! several shapes, fresh random inputs; outputs are poisoned (NaN) before
//! each launch so an element the kernel forgot fails the comparison.

use djinn_core::activations::FLASH_HEAD_DIMS;
use djinn_core::Dtype;
use djinn_kernels::check::close_f32;
use djinn_kernels::{self as k, bf16, f16, Half, Rng};
use djinn_runtime::cuda::CudaOps;
use djinn_runtime::ops::{AttnShape, Buf, Ops, RopeTable};

use super::gpu_ops;

/// A model dtype with its `{op}_{dtype}` CPU twins.
trait Twin: Half {
    const DT: Dtype;
    fn bits(self) -> u16;
    fn from_bits(b: u16) -> Self;
    fn embed(x: &mut [f32], t: &[Self], tok: &[u32], h: usize);
    fn rmsnorm(o: &mut [Self], x: &[f32], w: &[Self], r: usize, d: usize, eps: f32);
    fn matmul(o: &mut [Self], x: &[Self], w: &[Self], m: usize, n: usize, k: usize);
    fn matmul_f32(o: &mut [f32], x: &[Self], w: &[Self], m: usize, n: usize, k: usize);
    #[allow(clippy::too_many_arguments)]
    fn rope(q: &mut [Self], k: &mut [Self], t: usize, p: usize, h: usize, kv: usize, d: usize, freqs: &[f32]);
    fn kv_store(kc: &mut [Self], vc: &mut [Self], k: &[Self], v: &[Self], t: usize, p: usize, kv_dim: usize);
    #[allow(clippy::too_many_arguments)]
    fn attention(
        o: &mut [Self],
        q: &[Self],
        kc: &[Self],
        vc: &[Self],
        s: &mut [f32],
        t: usize,
        p: usize,
        h: usize,
        kv: usize,
        d: usize,
        window: usize,
    );
    #[allow(clippy::too_many_arguments)]
    fn attn_softmax(
        p: &mut [Self],
        s: &[f32],
        rows: usize,
        t: usize,
        p0: usize,
        stride: usize,
        out_stride: usize,
        window: usize,
    );
    fn silu_mul(g: &mut [Self], u: &[Self], n: usize);
    fn add(x: &mut [f32], y: &[Self], n: usize);
    fn gemv(o: k::GemvOut<'_, Self>, w: &[Self], x: &[Self], m: usize, n: usize, k: usize);
    #[allow(clippy::too_many_arguments)]
    fn gemv_silu(o: &mut [Self], g: &[Self], u: &[Self], x: &[Self], m: usize, n: usize, k: usize);
    #[allow(clippy::too_many_arguments)]
    fn rope_kv_store(
        q: &mut [Self],
        k: &[Self],
        v: &[Self],
        kc: &mut [Self],
        vc: &mut [Self],
        t: usize,
        p: usize,
        h: usize,
        kv: usize,
        d: usize,
        freqs: &[f32],
    );
    #[allow(clippy::too_many_arguments)]
    fn attn_decode(
        part: &mut [f32],
        q: &[Self],
        kc: &[Self],
        vc: &[Self],
        seq: usize,
        h: usize,
        kv: usize,
        d: usize,
        scale: f32,
        window: usize,
    );
    fn attn_combine(o: &mut [Self], part: &[f32], h: usize, splits: usize, d: usize);
    fn add_bias(o: &mut [Self], b: &[Self], rows: usize, n: usize);
    fn head_rmsnorm(x: &mut [Self], w: &[Self], rows: usize, d: usize, eps: f32);
    #[allow(clippy::too_many_arguments)]
    fn attn_prefill(
        o: &mut [Self],
        q: &[Self],
        kc: &[Self],
        vc: &[Self],
        t: usize,
        p: usize,
        h: usize,
        kv: usize,
        d: usize,
        win: usize,
    );
    #[allow(clippy::too_many_arguments)]
    fn attn_decode_rope(
        part: &mut [f32],
        q: &[Self],
        k: &[Self],
        v: &[Self],
        kc: &mut [Self],
        vc: &mut [Self],
        seq: usize,
        h: usize,
        kv: usize,
        d: usize,
        scale: f32,
        window: usize,
        freqs: &[f32],
    );
    /// Relative size of one rounding step of the type.
    fn ulp() -> f64;
}

macro_rules! twin {
    ($t:ty, $dt:expr, $ulp:expr, $embed:ident, $rms:ident, $mm:ident, $mm32:ident, $rope:ident, $kvs:ident, $sm:ident, $att:ident, $silu:ident, $add:ident,
     $gemv:ident, $gemv_silu:ident, $rkv:ident, $ad:ident, $ac:ident, $ab:ident, $hn:ident, $ap:ident,
     $adr:ident) => {
        impl Twin for $t {
            const DT: Dtype = $dt;
            fn bits(self) -> u16 {
                self.to_bits()
            }
            fn from_bits(b: u16) -> Self {
                <$t>::from_bits(b)
            }
            fn embed(x: &mut [f32], t: &[Self], tok: &[u32], h: usize) {
                k::$embed(x, t, tok, h)
            }
            fn rmsnorm(o: &mut [Self], x: &[f32], w: &[Self], r: usize, d: usize, eps: f32) {
                k::$rms(o, x, w, r, d, eps)
            }
            fn matmul(o: &mut [Self], x: &[Self], w: &[Self], m: usize, n: usize, kk: usize) {
                k::$mm(o, x, w, m, n, kk)
            }
            fn matmul_f32(o: &mut [f32], x: &[Self], w: &[Self], m: usize, n: usize, kk: usize) {
                k::$mm32(o, x, w, m, n, kk)
            }
            fn rope(q: &mut [Self], kk: &mut [Self], t: usize, p: usize, h: usize, kv: usize, d: usize, f: &[f32]) {
                k::$rope(q, kk, t, p, h, kv, d, f)
            }
            fn kv_store(kc: &mut [Self], vc: &mut [Self], kk: &[Self], v: &[Self], t: usize, p: usize, kd: usize) {
                k::$kvs(kc, vc, kk, v, t, p, kd)
            }
            fn attention(
                o: &mut [Self],
                q: &[Self],
                kc: &[Self],
                vc: &[Self],
                s: &mut [f32],
                t: usize,
                p: usize,
                h: usize,
                kv: usize,
                d: usize,
                window: usize,
            ) {
                k::$att(o, q, kc, vc, s, t, p, h, kv, d, window)
            }
            fn attn_softmax(
                p: &mut [Self],
                s: &[f32],
                r: usize,
                t: usize,
                p0: usize,
                st: usize,
                os: usize,
                window: usize,
            ) {
                k::$sm(p, s, r, t, p0, st, os, window)
            }
            fn silu_mul(g: &mut [Self], u: &[Self], n: usize) {
                k::$silu(g, u, n)
            }
            fn add(x: &mut [f32], y: &[Self], n: usize) {
                k::$add(x, y, n)
            }
            fn gemv(o: k::GemvOut<'_, Self>, w: &[Self], x: &[Self], m: usize, n: usize, kk: usize) {
                k::$gemv(o, w, x, m, n, kk)
            }
            fn gemv_silu(o: &mut [Self], g: &[Self], u: &[Self], x: &[Self], m: usize, n: usize, kk: usize) {
                k::$gemv_silu(o, g, u, x, m, n, kk)
            }
            fn rope_kv_store(
                q: &mut [Self],
                kk: &[Self],
                v: &[Self],
                kc: &mut [Self],
                vc: &mut [Self],
                t: usize,
                p: usize,
                h: usize,
                kv: usize,
                d: usize,
                freqs: &[f32],
            ) {
                k::$rkv(q, kk, v, kc, vc, t, p, h, kv, d, freqs)
            }
            fn attn_decode(
                part: &mut [f32],
                q: &[Self],
                kc: &[Self],
                vc: &[Self],
                seq: usize,
                h: usize,
                kv: usize,
                d: usize,
                scale: f32,
                window: usize,
            ) {
                k::$ad(part, q, kc, vc, seq, h, kv, d, scale, window)
            }
            fn attn_combine(o: &mut [Self], part: &[f32], h: usize, splits: usize, d: usize) {
                k::$ac(o, part, h, splits, d)
            }
            fn add_bias(o: &mut [Self], b: &[Self], rows: usize, n: usize) {
                k::$ab(o, b, rows, n)
            }
            fn head_rmsnorm(x: &mut [Self], w: &[Self], rows: usize, d: usize, eps: f32) {
                k::$hn(x, w, rows, d, eps)
            }
            fn attn_prefill(
                o: &mut [Self],
                q: &[Self],
                kc: &[Self],
                vc: &[Self],
                t: usize,
                p: usize,
                h: usize,
                kv: usize,
                d: usize,
                win: usize,
            ) {
                k::$ap(o, q, kc, vc, t, p, h, kv, d, win)
            }
            fn attn_decode_rope(
                part: &mut [f32],
                q: &[Self],
                kk: &[Self],
                v: &[Self],
                kc: &mut [Self],
                vc: &mut [Self],
                seq: usize,
                h: usize,
                kv: usize,
                d: usize,
                scale: f32,
                window: usize,
                freqs: &[f32],
            ) {
                k::$adr(part, q, kk, v, kc, vc, seq, h, kv, d, scale, window, freqs)
            }
            fn ulp() -> f64 {
                $ulp
            }
        }
    };
}

twin!(
    f16,
    Dtype::F16,
    1.0 / 1024.0,
    embed_f16,
    rmsnorm_f16,
    matmul_f16,
    matmul_f16_f32,
    rope_f16,
    kv_store_f16,
    attn_softmax_f16,
    attention_f16,
    silu_mul_f16,
    add_f16,
    gemv_f16,
    gemv_silu_f16,
    rope_kv_store_f16,
    attn_decode_f16,
    attn_combine_f16,
    add_bias_f16,
    head_rmsnorm_f16,
    attn_prefill_f16,
    attn_decode_rope_f16
);
twin!(
    bf16,
    Dtype::Bf16,
    1.0 / 128.0,
    embed_bf16,
    rmsnorm_bf16,
    matmul_bf16,
    matmul_bf16_f32,
    rope_bf16,
    kv_store_bf16,
    attn_softmax_bf16,
    attention_bf16,
    silu_mul_bf16,
    add_bf16,
    gemv_bf16,
    gemv_silu_bf16,
    rope_kv_store_bf16,
    attn_decode_bf16,
    attn_combine_bf16,
    add_bias_bf16,
    head_rmsnorm_bf16,
    attn_prefill_bf16,
    attn_decode_rope_bf16
);

/// A bump allocator over the standalone arena; every allocation is poisoned.
struct Dev {
    ops: CudaOps,
    next: u64,
}

impl Dev {
    fn reset(&mut self) {
        self.next = 0;
    }

    fn alloc(&mut self, elems: u64, dtype: Dtype) -> Buf {
        let b = Buf { offset: self.next, elems, dtype };
        self.next = (self.next + b.bytes()).div_ceil(256) * 256;
        self.ops.fill(b.offset, b.bytes(), 0xFF).unwrap();
        b
    }

    fn put<W: Twin>(&mut self, v: &[W]) -> Buf {
        let b = self.alloc(v.len() as u64, W::DT);
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.bits().to_le_bytes()).collect();
        self.ops.upload(b.offset, &bytes).unwrap();
        b
    }

    fn put_f32(&mut self, v: &[f32]) -> Buf {
        let b = self.alloc(v.len() as u64, Dtype::F32);
        self.ops.upload(b.offset, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()).unwrap();
        b
    }

    fn put_u32(&mut self, v: &[u32]) -> Buf {
        let b = self.alloc(v.len() as u64, Dtype::F32);
        self.ops.upload(b.offset, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()).unwrap();
        b
    }

    fn get<W: Twin>(&mut self, b: Buf) -> Vec<W> {
        assert_eq!(b.dtype, W::DT);
        let raw = self.ops.download(b.offset, b.bytes()).unwrap();
        raw.chunks_exact(2).map(|c| W::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect()
    }

    fn get_f32(&mut self, b: Buf) -> Vec<f32> {
        let raw = self.ops.download(b.offset, b.bytes()).unwrap();
        raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }
}

fn dev(test: &str) -> Option<Dev> {
    gpu_ops(test, 256 << 20).map(|ops| Dev { ops, next: 0 })
}

fn halves<W: Twin>(rng: &mut Rng, n: usize, scale: f32) -> Vec<W> {
    rng.normals(n, scale).into_iter().map(W::from_f32).collect()
}

fn wide<W: Twin>(v: &[W]) -> Vec<f32> {
    v.iter().map(|x| x.to_f32()).collect()
}

/// Compares and prints the worst error; panics with the first mismatches.
fn check(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    match close_f32(what, got, want, atol, rtol) {
        Ok(c) => println!("{what}: ok, max |err| {:.3e} at [{}]", c.max_abs_err, c.at),
        Err(e) => panic!("{e}"),
    }
}

fn seed(parts: &[u64]) -> Rng {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let s = parts.iter().fold(t, |a, &p| a.rotate_left(7) ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    println!("seed {s}");
    Rng::new(s)
}

fn embed_case<W: Twin>(d: &mut Dev, vocab: usize, hidden: usize, n: usize) {
    d.reset();
    let mut rng = seed(&[vocab as u64, hidden as u64, n as u64]);
    let table: Vec<W> = halves(&mut rng, vocab * hidden, 1.0);
    let mut tokens: Vec<u32> = (0..n).map(|_| (rng.next_u64() % vocab as u64) as u32).collect();
    tokens[0] = vocab as u32 - 1;
    let (bt, bk, bx) = (d.put(&table), d.put_u32(&tokens), d.alloc((n * hidden) as u64, Dtype::F32));
    d.ops.embed(bx, bt, bk, n as u64, hidden as u64).unwrap();
    let mut want = vec![0f32; n * hidden];
    W::embed(&mut want, &table, &tokens, hidden);
    check(&format!("embed {} v{vocab} h{hidden} n{n}", W::DT), &d.get_f32(bx), &want, 0.0, 0.0);
}

#[test]
fn embed_matches_its_twin() {
    let Some(mut d) = dev("embed_matches_its_twin") else { return };
    for (v, h, n) in [(50, 96, 1), (32000, 64, 7), (1000, 4096, 33)] {
        embed_case::<f16>(&mut d, v, h, n);
        embed_case::<bf16>(&mut d, v, h, n);
    }
}

fn rmsnorm_case<W: Twin>(d: &mut Dev, rows: usize, dim: usize) {
    d.reset();
    let mut rng = seed(&[rows as u64, dim as u64]);
    let x = rng.normals(rows * dim, 3.0);
    let w: Vec<W> = halves(&mut rng, dim, 1.0);
    let (bx, bw, bo) = (d.put_f32(&x), d.put(&w), d.alloc((rows * dim) as u64, W::DT));
    d.ops.rmsnorm(bo, bx, bw, rows as u64, dim as u64, 1e-5).unwrap();
    let mut want = vec![W::from_f32(0.0); rows * dim];
    W::rmsnorm(&mut want, &x, &w, rows, dim, 1e-5);
    check(&format!("rmsnorm {} {rows}x{dim}", W::DT), &wide(&d.get::<W>(bo)), &wide(&want), 1e-6, W::ulp());
}

#[test]
fn rmsnorm_matches_its_twin() {
    let Some(mut d) = dev("rmsnorm_matches_its_twin") else { return };
    // Rows of whole quads take the vector path (up to 8192 quads), the others one value a thread.
    for (r, dim) in [(1, 64), (7, 96), (5, 4096), (3, 5120), (512, 5120), (2, 33), (3, 12), (1, 6), (2, 40_000)] {
        rmsnorm_case::<f16>(&mut d, r, dim);
        rmsnorm_case::<bf16>(&mut d, r, dim);
    }
}

fn matmul_case<W: Twin>(d: &mut Dev, m: usize, n: usize, kk: usize, f32_out: bool) {
    d.reset();
    let mut rng = seed(&[m as u64, n as u64, kk as u64]);
    let x: Vec<W> = halves(&mut rng, m * kk, 1.0);
    let w: Vec<W> = halves(&mut rng, n * kk, 1.0 / (kk as f32).sqrt());
    let (bx, bw) = (d.put(&x), d.put(&w));
    let what = format!("matmul {} m{m} n{n} k{kk}{}", W::DT, if f32_out { " ->f32" } else { "" });
    if f32_out {
        let bo = d.alloc((m * n) as u64, Dtype::F32);
        d.ops.matmul(bo, bx, bw, m as u64, n as u64, kk as u64).unwrap();
        let mut want = vec![0f32; m * n];
        W::matmul_f32(&mut want, &x, &w, m, n, kk);
        check(&what, &d.get_f32(bo), &want, 1e-4, 1e-4);
    } else {
        let bo = d.alloc((m * n) as u64, W::DT);
        d.ops.matmul(bo, bx, bw, m as u64, n as u64, kk as u64).unwrap();
        let mut want = vec![W::from_f32(0.0); m * n];
        W::matmul(&mut want, &x, &w, m, n, kk);
        check(&what, &wide(&d.get::<W>(bo)), &wide(&want), 1e-4, W::ulp());
    }
}

#[test]
fn matmul_matches_its_twin() {
    let Some(mut d) = dev("matmul_matches_its_twin") else { return };
    for (m, n, kk, f) in [
        (1, 96, 96, false),
        (7, 256, 96, false),
        (5, 96, 256, false),
        (33, 384, 1024, false),
        (1, 32000, 64, true),
        (3, 1000, 96, true),
    ] {
        matmul_case::<f16>(&mut d, m, n, kk, f);
        matmul_case::<bf16>(&mut d, m, n, kk, f);
    }
}

/// Prefill products of one input as one batched GEMM (`batched.rs`): q/k/v
/// and gate/up with equally spaced weights and outputs, against the twin's
/// products one by one; then the same with unequal spacing (one by one on
/// the device too), and with batching off.
fn batched_case<W: Twin>(d: &mut Dev, m: usize, n: usize, kk: usize) {
    d.reset();
    let mut rng = seed(&[m as u64, n as u64, kk as u64, 3]);
    let x: Vec<W> = halves(&mut rng, m * kk, 1.0);
    let ws: Vec<Vec<W>> = (0..3).map(|_| halves(&mut rng, n * kk, 1.0 / (kk as f32).sqrt())).collect();
    let bx = d.put(&x);
    for (spaced, on) in [(true, true), (false, true), (true, false)] {
        d.ops.set_batched(on);
        let what = format!("batched {} m{m} n{n} k{kk} spaced {spaced} on {on}", W::DT);
        let bw: Vec<Buf> = ws
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let b = d.put(w);
                if !spaced {
                    d.alloc(256 * (i as u64 + 1), W::DT); // a gap that differs between neighbours
                }
                b
            })
            .collect();
        let outs: Vec<Buf> = (0..3).map(|_| d.alloc((m * n) as u64, W::DT)).collect();
        let (o3, w3) = ([outs[0], outs[1], outs[2]], [bw[0], bw[1], bw[2]]);
        let (mu, nu, ku) = (m as u64, n as u64, kk as u64);
        assert_eq!(d.ops.runs_batched(&o3, bx, &w3, mu, nu, ku), spaced && on, "{what}: which path runs");
        d.ops.qkv(o3, bx, w3, mu, [nu; 3], ku).unwrap();
        let mut wants = Vec::new();
        for i in 0..3 {
            let mut want = vec![W::from_f32(0.0); m * n];
            W::matmul(&mut want, &x, &ws[i], m, n, kk);
            check(&format!("{what} qkv[{i}]"), &wide(&d.get::<W>(outs[i])), &wide(&want), 1e-4, W::ulp());
            wants.push(want);
        }
        d.ops.gate_up_silu(outs[0], outs[1], bx, bw[0], bw[1], mu, nu, ku).unwrap();
        let (mut g, u) = (wants[0].clone(), wants[1].clone());
        W::silu_mul(&mut g, &u, m * n);
        check(&format!("{what} gate_up_silu"), &wide(&d.get::<W>(outs[0])), &wide(&g), 1e-4, 2.0 * W::ulp());
    }
    d.ops.set_batched(true);
}

#[test]
fn batched_prefill_products_match_their_twins() {
    let Some(mut d) = dev("batched_prefill_products_match_their_twins") else { return };
    for (m, n, kk) in [(9, 96, 64), (64, 384, 1024), (37, 1000, 520), (512, 640, 512)] {
        batched_case::<f16>(&mut d, m, n, kk);
        batched_case::<bf16>(&mut d, m, n, kk);
    }
}

/// RoPE's table for a test: unscaled `theta`, or (`scaled`) llama3's scaling
/// as Llama 3.1 has it (factor 8, band 1..4 of 8192 positions), through core's `inv_freq`.
fn rope_table(hd: usize, theta: f32, scaled: bool) -> RopeTable {
    if !scaled {
        return RopeTable::unscaled(hd as u64, theta as f64);
    }
    let arch = djinn_core::model::Architecture {
        head_dim: hd as u64,
        rope_theta: theta as f64,
        rope_scaling: djinn_core::model::RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        },
        ..Default::default()
    };
    RopeTable::of(&arch).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn rope_case<W: Twin>(d: &mut Dev, t: usize, p: usize, h: usize, kv: usize, hd: usize, theta: f32, scaled: bool) {
    d.reset();
    let mut rng = seed(&[t as u64, p as u64, hd as u64]);
    let mut q: Vec<W> = halves(&mut rng, t * h * hd, 1.0);
    let mut kk: Vec<W> = halves(&mut rng, t * kv * hd, 1.0);
    let (bq, bk) = (d.put(&q), d.put(&kk));
    let shape = AttnShape {
        tokens: t as u64,
        pos0: p as u64,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: rope_table(hd, theta, scaled),
        window: None,
        header: None,
    };
    d.ops.rope(bq, bk, shape).unwrap();
    W::rope(&mut q, &mut kk, t, p, h, kv, hd, &shape.rope.inv_freq);
    // Angles of far positions differ by a few f32 ulps between libm and CUDA's sincosf/powf.
    let atol = if W::DT == Dtype::F16 { 2e-3 } else { 1e-2 };
    check(&format!("rope {} q t{t} p{p} h{h}x{hd}", W::DT), &wide(&d.get::<W>(bq)), &wide(&q), atol, 2.0 * W::ulp());
    check(&format!("rope {} k t{t} p{p} kv{kv}x{hd}", W::DT), &wide(&d.get::<W>(bk)), &wide(&kk), atol, 2.0 * W::ulp());
}

#[test]
fn rope_matches_its_twin() {
    let Some(mut d) = dev("rope_matches_its_twin") else { return };
    for (t, p, h, kv, hd, th, scaled) in [
        (1, 0, 4, 4, 16, 1e4, false),
        (5, 3, 6, 2, 16, 5e5, false),
        (7, 250, 4, 1, 32, 1e4, false),
        (1, 4000, 32, 8, 128, 5e5, false),
        (17, 0, 8, 8, 64, 1e4, false),
        (1, 4000, 32, 8, 128, 5e5, true),
        (9, 70, 6, 2, 8, 5e5, true),
        (3, 1000, 3, 1, 256, 1e6, true),
    ] {
        rope_case::<f16>(&mut d, t, p, h, kv, hd, th, scaled);
        rope_case::<bf16>(&mut d, t, p, h, kv, hd, th, scaled);
    }
}

fn softmax_case<W: Twin>(d: &mut Dev, heads: usize, t: usize, p: usize, stride: usize, window: Option<usize>) {
    d.reset();
    let mut rng = seed(&[heads as u64, t as u64, p as u64]);
    let (rows, seq) = (heads * t, p + t);
    let scores = rng.normals(rows * stride, 4.0);
    let (bs, bp) = (d.put_f32(&scores), d.alloc((rows * seq) as u64, W::DT));
    let win = window.map(|w| w as u64);
    d.ops.attn_softmax(bp, bs, rows as u64, t as u64, p as u64, stride as u64, seq as u64, win).unwrap();
    let mut want = vec![W::from_f32(f32::NAN); rows * seq];
    W::attn_softmax(&mut want, &scores, rows, t, p, stride, seq, window.unwrap_or(0));
    let tag = format!("{} h{heads} t{t} p{p} stride {stride} window {window:?}", W::DT);
    check(&format!("attn_softmax {tag}"), &wide(&d.get::<W>(bp)), &wide(&want), 1e-6, W::ulp());
    // In place, as attention runs it: probabilities over the first half of each score row.
    let probs = Buf { offset: bs.offset, elems: bs.elems * 2, dtype: W::DT };
    d.ops.attn_softmax(probs, bs, rows as u64, t as u64, p as u64, stride as u64, 2 * stride as u64, win).unwrap();
    let raw: Vec<W> = d.get::<W>(Buf { offset: bs.offset, elems: bs.elems * 2, dtype: W::DT });
    let got: Vec<W> = (0..rows).flat_map(|r| raw[r * 2 * stride..r * 2 * stride + seq].to_vec()).collect();
    check(&format!("attn_softmax in place {tag}"), &wide(&got), &wide(&want), 1e-6, W::ulp());
}

#[test]
fn attn_softmax_matches_its_twin() {
    let Some(mut d) = dev("attn_softmax_matches_its_twin") else { return };
    // (heads, tokens, pos0, row stride): decode rows, prefill triangles, padded and long rows.
    for (h, t, p, stride) in
        [(1, 1, 0, 1), (4, 1, 37, 40), (6, 5, 0, 8), (2, 17, 3, 24), (40, 1, 4000, 4008), (3, 2, 9000, 9002)]
    {
        softmax_case::<f16>(&mut d, h, t, p, stride, None);
        softmax_case::<bf16>(&mut d, h, t, p, stride, None);
    }
    // Sliding windows: shorter than a prefill triangle, straddling a prefix, one position, wider than the row.
    for (h, t, p, stride, w) in
        [(6, 21, 0, 24, 8), (2, 17, 30, 48, 13), (4, 3, 5, 8, 1), (3, 2, 4000, 4002, 4096), (5, 1, 9000, 9001, 4096)]
    {
        softmax_case::<f16>(&mut d, h, t, p, stride, Some(w));
        softmax_case::<bf16>(&mut d, h, t, p, stride, Some(w));
    }
}

#[allow(clippy::too_many_arguments)]
fn kv_attention_case<W: Twin>(
    d: &mut Dev,
    t: usize,
    p: usize,
    h: usize,
    kv: usize,
    hd: usize,
    max_seq: usize,
    window: Option<usize>,
) {
    d.reset();
    let mut rng = seed(&[t as u64, p as u64, h as u64, hd as u64]);
    let kv_dim = kv * hd;
    let seq = p + t;
    // Cache rows before pos0 hold earlier tokens; this pass's k, v go in via kv_store.
    let mut kc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let mut vc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let (kn, vn): (Vec<W>, Vec<W>) = (halves(&mut rng, t * kv_dim, 1.0), halves(&mut rng, t * kv_dim, 1.0));
    let q: Vec<W> = halves(&mut rng, t * h * hd, 1.0);
    let (bkc, bvc, bkn, bvn, bq) = (d.put(&kc), d.put(&vc), d.put(&kn), d.put(&vn), d.put(&q));
    let bs = d.alloc((h * t * seq) as u64, Dtype::F32);
    let bo = d.alloc((t * h * hd) as u64, W::DT);
    let shape = AttnShape {
        tokens: t as u64,
        pos0: p as u64,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window: window.map(|w| w as u64),
        header: None,
    };
    d.ops.kv_store(bkc, bvc, bkn, bvn, shape).unwrap();
    d.ops.attention(bo, bq, bkc, bvc, bs, shape).unwrap();
    W::kv_store(&mut kc, &mut vc, &kn, &vn, t, p, kv_dim);
    let mut scores = vec![0f32; h * t * seq];
    let mut out = vec![W::from_f32(0.0); t * h * hd];
    // Prefill of the flash head sizes runs attn_prefill.cu: its twin, within a
    // probability's rounding step of the largest |v| (attn_prefill_case says
    // why); else cuBLAS, which rounds as `attention`'s twin does. One query row
    // runs the decode kernel, which keeps its probabilities in f32 where the
    // twin rounds each to the model dtype: the outputs then differ by at most
    // Σ_j |p_j - round(p_j)| · |v_j| <= ulp/2 · max |v|, which for bf16 is
    // looser than a fixed 1e-3 (the test failed once on fresh inputs, at a
    // case its log did not keep; this bound is the likely reason).
    let half_step = W::ulp() * wide(&vc).iter().fold(0f64, |m, v| m.max(v.abs() as f64)) / 2.0;
    let mut atol = 1e-3;
    if t > 1 && FLASH_HEAD_DIMS.contains(&(hd as u64)) {
        W::attn_prefill(&mut out, &q, &kc, &vc, t, p, h, kv, hd, window.unwrap_or(0));
        atol = half_step;
    } else {
        W::attention(&mut out, &q, &kc, &vc, &mut scores, t, p, h, kv, hd, window.unwrap_or(0));
        if t == 1 {
            atol = half_step.max(atol);
        }
    }
    let tag = format!("{} t{t} p{p} h{h}/{kv}x{hd} window {window:?}", W::DT);
    check(&format!("kv_store k {tag}"), &wide(&d.get::<W>(bkc)), &wide(&kc), 0.0, 0.0);
    check(&format!("kv_store v {tag}"), &wide(&d.get::<W>(bvc)), &wide(&vc), 0.0, 0.0);
    check(&format!("attention {tag}"), &wide(&d.get::<W>(bo)), &wide(&out), atol, 2.0 * W::ulp());
}

#[test]
fn kv_store_and_attention_match_their_twins() {
    let Some(mut d) = dev("kv_store_and_attention_match_their_twins") else { return };
    // (tokens, pos0, heads, kv heads, head_dim, max_seq): decode and prefill, MHA and GQA.
    for (t, p, h, kv, hd, ms) in [
        (1, 0, 4, 4, 16, 8),
        (5, 0, 6, 2, 16, 16),
        (1, 37, 6, 2, 16, 64),
        (9, 11, 8, 8, 64, 32),
        (1, 300, 32, 8, 128, 512),
        (33, 0, 8, 2, 128, 64),
        (3, 5, 4, 2, 96, 16),
        // Decode at head sizes whose threads hold all of a chunk's rows
        // (8, 32) or half of them (256: the rest loaded after the wait).
        (1, 70, 2, 1, 8, 80),
        (1, 129, 8, 8, 32, 160),
        (1, 200, 4, 2, 256, 256),
    ] {
        kv_attention_case::<f16>(&mut d, t, p, h, kv, hd, ms, None);
        kv_attention_case::<bf16>(&mut d, t, p, h, kv, hd, ms, None);
    }
}

/// Sliding-window attention on the prefill path (cuBLAS around the windowed
/// softmax) and, with one query row, the decode kernel: against the twin,
/// and different from full attention past the window.
#[test]
fn sliding_window_attention_matches_its_twin() {
    let Some(mut d) = dev("sliding_window_attention_matches_its_twin") else { return };
    for (t, p, h, kv, hd, ms, w) in [
        (21, 0, 4, 2, 16, 32, 8),
        (9, 30, 6, 2, 64, 48, 13),
        (33, 0, 8, 2, 128, 64, 1),
        (1, 300, 32, 8, 128, 512, 100),
        (1, 4000, 8, 2, 128, 4100, 4096),
        (1, 37, 4, 4, 16, 64, 12),
    ] {
        kv_attention_case::<f16>(&mut d, t, p, h, kv, hd, ms, Some(w));
        kv_attention_case::<bf16>(&mut d, t, p, h, kv, hd, ms, Some(w));
    }
}

/// `n` values from element `off` of their buffers: an odd `off` misaligns
/// them for the kernels' 16-byte path, which must then take the scalar one.
fn elementwise_case<W: Twin>(d: &mut Dev, n: usize, off: usize) {
    d.reset();
    let mut rng = seed(&[n as u64, off as u64]);
    let mut g: Vec<W> = halves(&mut rng, off + n, 4.0);
    let u: Vec<W> = halves(&mut rng, off + n, 1.0);
    let mut x = rng.normals(off + n, 2.0);
    let (o, nn) = (off as u64, n as u64);
    let (bg, bu, bx) = (d.put(&g).slice(o, nn), d.put(&u).slice(o, nn), d.put_f32(&x).slice(o, nn));
    d.ops.silu_mul(bg, bu, nn).unwrap();
    d.ops.add(bx, bu, nn).unwrap();
    W::silu_mul(&mut g[off..], &u[off..], n);
    W::add(&mut x[off..], &u[off..], n);
    let what = |op| format!("{op} {} n{n} from element {off}", W::DT);
    check(&what("silu_mul"), &wide(&d.get::<W>(bg)), &wide(&g[off..]), 1e-6, W::ulp());
    check(&what("add"), &d.get_f32(bx), &x[off..], 0.0, 0.0);
}

#[test]
fn silu_mul_and_add_match_their_twins() {
    let Some(mut d) = dev("silu_mul_and_add_match_their_twins") else { return };
    for (n, off) in [(1, 0), (1000, 0), (100_003, 0), (2_000_000, 0), (4096, 1), (100_003, 3), (7, 8)] {
        elementwise_case::<f16>(&mut d, n, off);
        elementwise_case::<bf16>(&mut d, n, off);
    }
}

#[test]
fn copy_f32_from_pinned_host_memory_matches_its_twin() {
    let Some(mut d) = dev("copy_f32_from_pinned_host_memory_matches_its_twin") else { return };
    let mut rng = seed(&[11]);
    for n in [1usize, 5120, 100_003] {
        d.reset();
        let src = rng.normals(n, 2.0);
        let mut pinned = djinn_runtime::cuda::PinnedBuffer::new(d.ops.gpu(), n * 4, "the test's source").unwrap();
        for (c, v) in pinned.as_mut_slice().chunks_exact_mut(4).zip(&src) {
            c.copy_from_slice(&v.to_le_bytes());
        }
        let dst = d.put_f32(&vec![f32::NAN; n + 1]);
        let ptr = pinned.device_ptr().unwrap();
        d.ops.copy_from_host(dst, ptr, (n * 4) as u64, n as u64).unwrap();
        let got = d.get_f32(dst);
        let mut want = vec![f32::NAN; n + 1];
        k::copy_f32(&mut want, &src, n);
        assert!(got[..n].iter().zip(&want[..n]).all(|(a, b)| a.to_bits() == b.to_bits()), "copy of {n} floats");
        assert!(got[n].is_nan(), "the element past n is untouched");
        // More than the host buffer holds is refused before launch.
        assert!(d.ops.copy_from_host(dst, ptr, (n * 4) as u64, n as u64 + 1).is_err());
    }
}

#[test]
fn argmax_matches_its_twin() {
    let Some(mut d) = dev("argmax_matches_its_twin") else { return };
    let mut rng = seed(&[5]);
    for n in [1usize, 31, 1024, 32000, 128_256] {
        d.reset();
        let mut x = rng.normals(n, 3.0);
        if n > 10 {
            x[n / 2] = f32::NAN;
            let top = x.iter().cloned().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max);
            x[n - 1] = top; // a tie: the first index wins
        }
        let (bl, bo) = (d.put_f32(&x), d.alloc(1, Dtype::F32));
        d.ops.argmax(bo, bl, n as u64).unwrap();
        let got = d.get_f32(bo)[0].to_bits();
        assert_eq!(got as usize, k::argmax_f32(&x), "argmax of {n} logits");
    }
}

/// Rows of logits for the sampling test, by name: plain normals (many
/// tokens with mass), a peaked row (a few far above the rest, like a
/// model's), one with NaN, -inf and ties (repeated values, the max among
/// them), one rounded to halves (thousands of ties at every cut), and a flat one.
fn sample_rows(rng: &mut Rng, n: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut rows = vec![("normal", rng.normals(n, 3.0))];
    let mut peaked = rng.normals(n, 1.5);
    for _ in 0..n.min(6) {
        let i = (rng.next_u64() % n as u64) as usize;
        peaked[i] += 12.0 + rng.uniform() * 4.0;
    }
    rows.push(("peaked", peaked));
    let mut special = rng.normals(n, 2.0);
    for i in 0..n {
        match rng.next_u64() % 64 {
            0 => special[i] = f32::NAN,
            1 => special[i] = f32::NEG_INFINITY,
            2..=7 if i > 0 => special[i] = special[i - 1],
            _ => {}
        }
    }
    if n > 2 {
        let top = special.iter().cloned().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max);
        special[n - 1] = top;
        special[n / 3] = top;
    }
    rows.push(("nan-inf-ties", special));
    rows.push(("halves", rng.normals(n, 2.0).into_iter().map(|v| (v * 2.0).round() / 2.0).collect()));
    rows.push(("flat", vec![0.25; n]));
    rows
}

/// `sample.cu` against its twin `sample_f32_with` on fresh random rows of
/// several vocabulary sizes (odd ones, Qwen's 151936), under temperatures,
/// top-k, top-p and min-p alone and together, the degenerate settings
/// (top-k 1, top-p 0, min-p above 1, greedy), for many uniforms each. The
/// kernel computes the twin's probabilities bit for bit and sums fixed-point
/// masses exactly, so the tokens must be equal; a mismatch prints whether
/// the twin at u ± 1e-6 gives the device's token (a boundary) or not (a cut).
#[test]
fn sample_matches_its_twin() {
    use k::SampleParams;
    let Some(mut d) = dev("sample_matches_its_twin") else { return };
    let mut rng = seed(&[13]);
    let t = |temperature: f32| SampleParams { temperature, ..SampleParams::GREEDY };
    let settings = [
        t(1.0),
        SampleParams { top_p: 0.9, ..t(0.7) },
        SampleParams { top_k: 50, ..t(1.0) },
        SampleParams { top_k: 40, top_p: 0.95, min_p: 0.05, ..t(0.8) },
        SampleParams { min_p: 0.1, ..t(1.5) },
        SampleParams { top_k: 1000, top_p: 0.5, ..t(0.3) },
        SampleParams { top_k: 3000, top_p: 0.999, ..t(4.0) },
        SampleParams { top_k: 1, ..t(2.0) },
        SampleParams { top_p: 1e-4, ..t(1.0) },
        SampleParams { top_p: 0.0, ..t(1.0) },
        SampleParams { min_p: 2.0, ..t(1.0) },
        t(0.0),
    ];
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    for n in [1usize, 2, 31, 1000, 4097, 32000, 100_003, 128_256, 151_936] {
        let per = if n > 50_000 { 16 } else { 48 };
        for (row, x) in sample_rows(&mut rng, n) {
            d.reset();
            let (bl, bo) = (d.put_f32(&x), d.alloc(1, Dtype::F32));
            for p in &settings {
                let mut us: Vec<f32> = (0..per).map(|_| rng.uniform()).collect();
                us.extend([0.0, 0.5, 1.0 - f32::EPSILON / 2.0]);
                let mut got = Vec::with_capacity(us.len());
                for &u in &us {
                    d.ops.sample(bo, bl, n as u64, p, u).unwrap();
                    got.push(d.get_f32(bo)[0].to_bits() as usize);
                }
                let want: Vec<usize> = std::thread::scope(|s| {
                    let jobs: Vec<_> = us
                        .chunks(us.len().div_ceil(threads))
                        .map(|c| s.spawn(|| c.iter().map(|&u| k::sample_f32_with(&x, p, &[], u)).collect::<Vec<_>>()))
                        .collect();
                    jobs.into_iter().flat_map(|j| j.join().unwrap()).collect()
                });
                for ((&u, &g), &w) in us.iter().zip(&got).zip(&want) {
                    compared += 1;
                    if g != w {
                        let near = [u * (1.0 - 1e-6), u * (1.0 + 1e-6)]
                            .iter()
                            .any(|&v| k::sample_f32_with(&x, p, &[], v) == g);
                        mismatches.push(format!(
                            "n {n} {row} {p:?} u {u}: device {g}, twin {w} ({})",
                            if near {
                                "the twin gives it at u ± 1e-6: a boundary"
                            } else {
                                "not near u: a different cut"
                            }
                        ));
                    }
                }
            }
        }
        println!("sample, n {n}: {compared} draws compared so far, {} mismatches", mismatches.len());
    }
    assert!(mismatches.is_empty(), "{} of {compared} draws differ; the first:\n{}", mismatches.len(), {
        mismatches.truncate(10);
        mismatches.join("\n")
    });
}

/// The decode products (`gemv.cu`) through the fused ops, every epilogue:
/// q/k/v in one launch, the plain product (model dtype and f32 out), the
/// residual add and the SiLU gate; odd row counts, `k` not a multiple of the
/// kernel's step, 1 to 8 input rows. A `k` the 16-byte loads cannot take
/// goes to cuBLAS, and must still be right.
fn gemv_case<W: Twin>(d: &mut Dev, m: usize, n: usize, kk: usize) {
    d.reset();
    let mut rng = seed(&[m as u64, n as u64, kk as u64]);
    let tag = format!("{} m{m} n{n} k{kk}", W::DT);
    let scale = 1.0 / (kk as f32).sqrt();
    let x: Vec<W> = halves(&mut rng, m * kk, 1.0);
    let ws: Vec<Vec<W>> = (0..3).map(|_| halves(&mut rng, n * kk, scale)).collect();
    let bx = d.put(&x);
    let bw: Vec<Buf> = ws.iter().map(|w| d.put(w)).collect();
    let fused = kk.is_multiple_of(8) && m <= 8;
    assert_eq!(d.ops.runs_gemv(bx, bw[0], m as u64, kk as u64), fused, "{tag}: which path runs");
    // A product's largest rounding step: outputs are about N(0, 1).
    let atol = 8.0 * W::ulp();

    // q, k, v: three segments of different lengths in one launch.
    let ns = [n, n.div_ceil(3), n.div_ceil(3)];
    let outs: Vec<Buf> = ns.iter().map(|&r| d.alloc((m * r) as u64, W::DT)).collect();
    d.ops
        .qkv([outs[0], outs[1], outs[2]], bx, [bw[0], bw[1], bw[2]], m as u64, ns.map(|r| r as u64), kk as u64)
        .unwrap();
    for i in 0..3 {
        let mut want = vec![W::from_f32(0.0); m * ns[i]];
        W::gemv(k::GemvOut::Store(&mut want), &ws[i][..ns[i] * kk], &x, m, ns[i], kk);
        check(&format!("gemv qkv[{i}] {tag}"), &wide(&d.get::<W>(outs[i])), &wide(&want), atol, W::ulp());
    }

    let bo = d.alloc((m * n) as u64, Dtype::F32);
    d.ops.matmul(bo, bx, bw[0], m as u64, n as u64, kk as u64).unwrap();
    let mut want = vec![0f32; m * n];
    W::gemv(k::GemvOut::F32(&mut want), &ws[0], &x, m, n, kk);
    check(&format!("gemv ->f32 {tag}"), &d.get_f32(bo), &want, 1e-4, 1e-4);

    let resid = rng.normals(m * n, 2.0);
    let (br, bproj) = (d.put_f32(&resid), d.alloc((m * n) as u64, W::DT));
    d.ops.matmul_residual(br, bproj, bx, bw[1], m as u64, n as u64, kk as u64).unwrap();
    let mut want = resid.clone();
    W::gemv(k::GemvOut::Residual(&mut want), &ws[1], &x, m, n, kk);
    check(&format!("gemv residual {tag}"), &d.get_f32(br), &want, atol, 1e-6);

    let (bg, bu) = (d.alloc((m * n) as u64, W::DT), d.alloc((m * n) as u64, W::DT));
    d.ops.gate_up_silu(bg, bu, bx, bw[1], bw[2], m as u64, n as u64, kk as u64).unwrap();
    let mut want = vec![W::from_f32(0.0); m * n];
    W::gemv_silu(&mut want, &ws[1], &ws[2], &x, m, n, kk);
    check(&format!("gemv_silu {tag}"), &wide(&d.get::<W>(bg)), &wide(&want), atol, 2.0 * W::ulp());
}

#[test]
fn gemv_matches_its_twin() {
    let Some(mut d) = dev("gemv_matches_its_twin") else { return };
    for (m, n, kk) in [
        (1, 96, 96),
        (1, 37, 40),
        (2, 17, 8),
        (3, 1000, 64),
        (8, 333, 1032),
        (1, 5120, 5120),
        (1, 1024, 13824),
        (1, 2000, 13824),
        (1, 395, 264),
        (1, 60001, 64), // many waves of row blocks
        (5, 133, 520),
        (4, 4096, 4096),
        (1, 50, 33), // k % 8 != 0: cuBLAS
        (9, 64, 64), // more rows than the kernel takes: cuBLAS
        (1, 333, 768),
        (1, 2048, 11008),
        (1, 3, 28672),
    ] {
        gemv_case::<f16>(&mut d, m, n, kk);
        gemv_case::<bf16>(&mut d, m, n, kk);
    }
}

/// RoPE + store and decode attention given the pass header (the forward
/// pass's shapes: the position read on the device, attention's grid over
/// the whole cache, the splits past the position returning at once) give
/// exactly what they give with the position as arguments, and the attention
/// its twin's output; a header noted for another position is refused.
fn header_case<W: Twin>(
    d: &mut Dev,
    seq: usize,
    cache_rows: usize,
    h: usize,
    kv: usize,
    hd: usize,
    window: Option<u64>,
) {
    d.reset();
    let mut rng = seed(&[seq as u64, cache_rows as u64, h as u64, hd as u64]);
    let kv_dim = kv * hd;
    let q: Vec<W> = halves(&mut rng, h * hd, 1.0);
    let (kk, v): (Vec<W>, Vec<W>) = (halves(&mut rng, kv_dim, 1.0), halves(&mut rng, kv_dim, 1.0));
    let kc: Vec<W> = halves(&mut rng, cache_rows * kv_dim, 1.0);
    let vc: Vec<W> = halves(&mut rng, cache_rows * kv_dim, 1.0);
    let header = d.alloc(djinn_core::activations::PASS_WORDS, Dtype::F32);
    let scores = d.alloc((h * cache_rows.div_ceil(k::ATTN_CHUNK) * k::attn_partial_len(hd)) as u64, Dtype::F32);
    let shape = AttnShape {
        tokens: 1,
        pos0: seq as u64 - 1,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window,
        header: None,
    };
    let tag = format!("{} seq {seq} of {cache_rows} h{h}/{kv}x{hd} window {window:?}", W::DT);
    let mut outputs = Vec::new();
    for with_header in [false, true] {
        let (bq, bk, bv, bkc, bvc) = (d.put(&q), d.put(&kk), d.put(&v), d.put(&kc), d.put(&vc));
        let bo = d.alloc((h * hd) as u64, W::DT);
        let s = AttnShape { header: with_header.then_some(header), ..shape };
        if with_header {
            d.ops.write_pass(header, shape.pos0, 1).unwrap();
        }
        d.ops.rope_kv_store(bq, bk, bv, bkc, bvc, s).unwrap();
        d.ops.attention(bo, bq, bkc, bvc, scores, s).unwrap();
        outputs.push((d.get::<W>(bq), d.get::<W>(bkc), d.get::<W>(bvc), d.get::<W>(bo)));
    }
    let ((q0, kc0, vc0, o0), (q1, kc1, vc1, o1)) = (&outputs[0], &outputs[1]);
    assert!(q0 == q1 && kc0 == kc1 && vc0 == vc1, "{tag}: rope_kv_store differs with the pass header");
    assert!(o0 == o1, "{tag}: attention differs with the pass header");
    // The twin over the rotated cache the kernels left, at seq rows.
    let splits = seq.div_ceil(k::ATTN_CHUNK);
    let mut part = vec![0f32; h * splits * k::attn_partial_len(hd)];
    let scale = (hd as f64).powf(-0.5) as f32;
    W::attn_decode(&mut part, q1, kc1, vc1, seq, h, kv, hd, scale, window.unwrap_or(0) as usize);
    let mut want = vec![W::from_f32(0.0); h * hd];
    W::attn_combine(&mut want, &part, h, splits, hd);
    check(&format!("attention with the pass header {tag}"), &wide(o1), &wide(&want), 1e-3, 2.0 * W::ulp());

    // Noted for another position: refused, naming what it holds.
    d.ops.write_pass(header, shape.pos0 + 1, 1).unwrap();
    let (bq, bkc, bvc) = (d.put(&q), d.put(&kc), d.put(&vc));
    let bo = d.alloc((h * hd) as u64, W::DT);
    let err = d.ops.attention(bo, bq, bkc, bvc, scores, AttnShape { header: Some(header), ..shape }).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("staged for 1 tokens at position {}", shape.pos0 + 1)), "{tag}: {msg}");
}

#[test]
fn decode_kernels_read_the_position_from_the_pass_header() {
    let Some(mut d) = dev("decode_kernels_read_the_position_from_the_pass_header") else { return };
    // One live split of many, a partial last split, the cache exactly full, many dead splits, a window.
    for (seq, rows, h, kv, hd, w) in [
        (1, 200, 4, 4, 16, None),
        (37, 300, 6, 2, 16, None),
        (301, 301, 8, 8, 64, None),
        (513, 4096, 40, 40, 128, None),
        (700, 1100, 4, 1, 128, Some(64)),
        (100, 130, 4, 2, 256, None),
    ] {
        header_case::<f16>(&mut d, seq, rows, h, kv, hd, w);
        header_case::<bf16>(&mut d, seq, rows, h, kv, hd, w);
    }
}

#[allow(clippy::too_many_arguments)]
fn rope_kv_store_case<W: Twin>(
    d: &mut Dev,
    t: usize,
    p: usize,
    h: usize,
    kv: usize,
    hd: usize,
    theta: f32,
    scaled: bool,
) {
    d.reset();
    let mut rng = seed(&[t as u64, p as u64, h as u64, hd as u64]);
    let (kv_dim, max_seq) = (kv * hd, p + t + 2);
    let mut q: Vec<W> = halves(&mut rng, t * h * hd, 1.0);
    let kk: Vec<W> = halves(&mut rng, t * kv_dim, 1.0);
    let v: Vec<W> = halves(&mut rng, t * kv_dim, 1.0);
    let mut kc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let mut vc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let (bq, bk, bv, bkc, bvc) = (d.put(&q), d.put(&kk), d.put(&v), d.put(&kc), d.put(&vc));
    let shape = AttnShape {
        tokens: t as u64,
        pos0: p as u64,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: rope_table(hd, theta, scaled),
        window: None,
        header: None,
    };
    d.ops.rope_kv_store(bq, bk, bv, bkc, bvc, shape).unwrap();
    W::rope_kv_store(&mut q, &kk, &v, &mut kc, &mut vc, t, p, h, kv, hd, &shape.rope.inv_freq);
    let tag = format!("{} t{t} p{p} h{h}/{kv}x{hd}", W::DT);
    let atol = if W::DT == Dtype::F16 { 2e-3 } else { 1e-2 };
    check(&format!("rope_kv_store q {tag}"), &wide(&d.get::<W>(bq)), &wide(&q), atol, 2.0 * W::ulp());
    check(&format!("rope_kv_store k_cache {tag}"), &wide(&d.get::<W>(bkc)), &wide(&kc), atol, 2.0 * W::ulp());
    check(&format!("rope_kv_store v_cache {tag}"), &wide(&d.get::<W>(bvc)), &wide(&vc), 0.0, 0.0);
}

#[test]
fn rope_kv_store_matches_its_twin() {
    let Some(mut d) = dev("rope_kv_store_matches_its_twin") else { return };
    for (t, p, h, kv, hd, th, scaled) in [
        (1, 0, 4, 4, 16, 1e4, false),
        (1, 511, 40, 40, 128, 1e4, false),
        (5, 3, 6, 2, 16, 5e5, false),
        (1, 4000, 32, 8, 128, 5e5, false),
        (17, 0, 8, 1, 96, 1e4, false),
        (1, 4000, 32, 8, 128, 5e5, true),
        (7, 90, 4, 2, 8, 5e5, true),
        (64, 0, 40, 40, 128, 1e4, false), // a prefill: the 16-byte path over many tokens
        (3, 5, 4, 2, 40, 1e4, false),     // head_dim % 16 != 0: a pair a thread
    ] {
        rope_kv_store_case::<f16>(&mut d, t, p, h, kv, hd, th, scaled);
        rope_kv_store_case::<bf16>(&mut d, t, p, h, kv, hd, th, scaled);
    }
}

/// Decode attention with RoPE and the newest row's store folded in
/// (`Ops::rope_attention` of one token: `attn_decode_rope`), with and
/// without the pass header: bit for bit what `rope_kv_store` then
/// `attention` give on the device (output and both cache planes), its q
/// left unrotated (the kernel turns it in shared memory: proof that the
/// folded kernel ran), and the output and the cache against the twin.
#[allow(clippy::too_many_arguments)]
fn attn_decode_rope_case<W: Twin>(
    d: &mut Dev,
    seq: usize,
    cache_rows: usize,
    h: usize,
    kv: usize,
    hd: usize,
    window: Option<u64>,
    scaled: bool,
) {
    let mut rng = seed(&[seq as u64, cache_rows as u64, h as u64, kv as u64, hd as u64, 7]);
    let kv_dim = kv * hd;
    let q: Vec<W> = halves(&mut rng, h * hd, 1.0);
    let (kk, v): (Vec<W>, Vec<W>) = (halves(&mut rng, kv_dim, 1.0), halves(&mut rng, kv_dim, 1.0));
    let kc: Vec<W> = halves(&mut rng, cache_rows * kv_dim, 1.0);
    let vc: Vec<W> = halves(&mut rng, cache_rows * kv_dim, 1.0);
    let splits = cache_rows.div_ceil(k::ATTN_CHUNK);
    let shape = AttnShape {
        tokens: 1,
        pos0: seq as u64 - 1,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: rope_table(hd, 5e5, scaled),
        window,
        header: None,
    };
    for with_header in [false, true] {
        d.reset();
        let header = d.alloc(djinn_core::activations::PASS_WORDS, Dtype::F32);
        let s = AttnShape { header: with_header.then_some(header), ..shape };
        if with_header {
            d.ops.write_pass(header, shape.pos0, 1).unwrap();
        }
        let tag = format!("{} seq {seq} of {cache_rows} h{h}/{kv}x{hd} window {window:?} header {with_header}", W::DT);
        let mut runs = Vec::new();
        for fold in [true, false] {
            let (bq, bk, bv, bkc, bvc) = (d.put(&q), d.put(&kk), d.put(&v), d.put(&kc), d.put(&vc));
            let scores = d.alloc((h * splits * k::attn_partial_len(hd)) as u64, Dtype::F32);
            let bo = d.alloc((h * hd) as u64, W::DT);
            if fold {
                d.ops.rope_attention(bo, bq, bk, bv, bkc, bvc, scores, s).unwrap();
                assert!(
                    d.get::<W>(bq) == q,
                    "{tag}: rope_attention rotated q in memory (the folded kernel did not run)"
                );
            } else {
                d.ops.rope_kv_store(bq, bk, bv, bkc, bvc, s).unwrap();
                d.ops.attention(bo, bq, bkc, bvc, scores, s).unwrap();
            }
            runs.push((d.get::<W>(bo), d.get::<W>(bkc), d.get::<W>(bvc)));
        }
        let ((o0, kc0, vc0), (o1, kc1, vc1)) = (&runs[0], &runs[1]);
        assert!(kc0 == kc1 && vc0 == vc1, "{tag}: the folded store differs from rope_kv_store's");
        assert!(o0 == o1, "{tag}: the folded attention differs from rope_kv_store then attention");

        let (mut kc2, mut vc2) = (kc.clone(), vc.clone());
        let live = seq.div_ceil(k::ATTN_CHUNK);
        let mut part = vec![0f32; h * live * k::attn_partial_len(hd)];
        let scale = (hd as f64).powf(-0.5) as f32;
        let win = window.unwrap_or(0) as usize;
        W::attn_decode_rope(
            &mut part,
            &q,
            &kk,
            &v,
            &mut kc2,
            &mut vc2,
            seq,
            h,
            kv,
            hd,
            scale,
            win,
            &shape.rope.inv_freq,
        );
        let mut want = vec![W::from_f32(0.0); h * hd];
        W::attn_combine(&mut want, &part, h, live, hd);
        let atol = if W::DT == Dtype::F16 { 2e-3 } else { 1e-2 };
        check(&format!("attn_decode_rope out {tag}"), &wide(o0), &wide(&want), atol, 2.0 * W::ulp());
        check(&format!("attn_decode_rope k_cache {tag}"), &wide(kc0), &wide(&kc2), atol, 2.0 * W::ulp());
        check(&format!("attn_decode_rope v_cache {tag}"), &wide(vc0), &wide(&vc2), 0.0, 0.0);
    }
}

#[test]
fn attn_decode_rope_matches_rope_kv_store_then_attention_and_its_twin() {
    let Some(mut d) = dev("attn_decode_rope_matches_rope_kv_store_then_attention_and_its_twin") else { return };
    // The newest row alone in its split, at a split's end, in the only split;
    // GQA (one writer a kv head), MQA, rows past those a thread holds (256),
    // a window, a scaled table, the 13B shape at the benchmark's position.
    for (seq, rows, h, kv, hd, w, scaled) in [
        (1, 70, 4, 4, 16, None, false),
        (37, 40, 6, 2, 16, None, true),
        (64, 64, 8, 8, 64, None, false),
        (65, 200, 8, 2, 64, None, false),
        (300, 301, 32, 8, 128, None, true),
        (513, 562, 40, 40, 128, None, false),
        (100, 130, 4, 2, 256, None, false),
        (129, 300, 4, 1, 8, None, false),
        (700, 1100, 4, 1, 128, Some(64), false),
        (4001, 4096, 40, 8, 128, Some(4096), false),
    ] {
        attn_decode_rope_case::<f16>(&mut d, seq, rows, h, kv, hd, w, scaled);
        attn_decode_rope_case::<bf16>(&mut d, seq, rows, h, kv, hd, w, scaled);
    }
}

/// Decode attention through `Ops::attention` with one query row: the split
/// kernel's partials (left in the scores scratch) and the combined output,
/// each against its twin; one split, several, a partial last split, GQA and MQA.
fn attn_decode_case<W: Twin>(d: &mut Dev, seq: usize, h: usize, kv: usize, hd: usize, window: Option<usize>) {
    d.reset();
    let mut rng = seed(&[seq as u64, h as u64, kv as u64, hd as u64]);
    let (kv_dim, max_seq) = (kv * hd, seq + 5);
    let kc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let vc: Vec<W> = halves(&mut rng, max_seq * kv_dim, 1.0);
    let q: Vec<W> = halves(&mut rng, h * hd, 1.0);
    let (bkc, bvc, bq) = (d.put(&kc), d.put(&vc), d.put(&q));
    let splits = seq.div_ceil(k::ATTN_CHUNK);
    let plen = h * splits * k::attn_partial_len(hd);
    let bs = d.alloc((h * seq).max(plen) as u64, Dtype::F32);
    let bo = d.alloc((h * hd) as u64, W::DT);
    let shape = AttnShape {
        tokens: 1,
        pos0: seq as u64 - 1,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window: window.map(|w| w as u64),
        header: None,
    };
    d.ops.attention(bo, bq, bkc, bvc, bs, shape).unwrap();
    let mut part = vec![0f32; plen];
    W::attn_decode(&mut part, &q, &kc, &vc, seq, h, kv, hd, (hd as f64).powf(-0.5) as f32, window.unwrap_or(0));
    // Splits wholly before the window hold m = -inf on both sides: compare them as a finite stand-in.
    let finite =
        |v: Vec<f32>| v.into_iter().map(|x| if x == f32::NEG_INFINITY { -1e30 } else { x }).collect::<Vec<_>>();
    let part = finite(part);
    let mut out = vec![W::from_f32(0.0); h * hd];
    W::attn_combine(&mut out, &part, h, splits, hd);
    let tag = format!("{} seq{seq} h{h}/{kv}x{hd} ({splits} splits) window {window:?}", W::DT);
    let got_part = finite(d.get_f32(Buf { elems: plen as u64, ..bs }));
    check(&format!("attn_decode partials {tag}"), &got_part, &part, 1e-3, 1e-4);
    check(&format!("attn_combine {tag}"), &wide(&d.get::<W>(bo)), &wide(&out), 1e-3, 2.0 * W::ulp());
}

#[test]
fn attn_decode_and_combine_match_their_twins() {
    let Some(mut d) = dev("attn_decode_and_combine_match_their_twins") else { return };
    for (seq, h, kv, hd) in [
        (1, 4, 4, 16),
        (37, 6, 2, 16),
        (256, 8, 8, 64),
        (300, 32, 8, 128),
        (513, 4, 2, 256),
        (100, 4, 1, 8),
        (4001, 40, 40, 128),
    ] {
        attn_decode_case::<f16>(&mut d, seq, h, kv, hd, None);
        attn_decode_case::<bf16>(&mut d, seq, h, kv, hd, None);
    }
    // Windows: whole splits skipped, the edge inside a split, on a split boundary, one row, wider than the cache.
    for (seq, h, kv, hd, w) in [
        (300, 8, 2, 64, 100),
        (4001, 40, 8, 128, 4096),
        (700, 4, 1, 128, 64),
        (129, 4, 2, 16, 1),
        (50, 6, 2, 32, 4096),
        (513, 4, 2, 256, 200),
    ] {
        attn_decode_case::<f16>(&mut d, seq, h, kv, hd, Some(w));
        attn_decode_case::<bf16>(&mut d, seq, h, kv, hd, Some(w));
    }
}

fn add_bias_case<W: Twin>(d: &mut Dev, rows: usize, n: usize) {
    d.reset();
    let mut rng = seed(&[rows as u64, n as u64]);
    let mut x: Vec<W> = halves(&mut rng, rows * n, 2.0);
    let b: Vec<W> = halves(&mut rng, n, 1.0);
    let (bx, bb) = (d.put(&x), d.put(&b));
    d.ops.add_bias(bx, bb, rows as u64, n as u64).unwrap();
    W::add_bias(&mut x, &b, rows, n);
    check(&format!("add_bias {} {rows}x{n}", W::DT), &wide(&d.get::<W>(bx)), &wide(&x), 0.0, 0.0);
}

#[test]
fn add_bias_matches_its_twin() {
    let Some(mut d) = dev("add_bias_matches_its_twin") else { return };
    for (rows, n) in [(1, 1), (1, 896), (7, 128), (33, 3584), (5, 1001)] {
        add_bias_case::<f16>(&mut d, rows, n);
        add_bias_case::<bf16>(&mut d, rows, n);
    }
}

fn head_rmsnorm_case<W: Twin>(d: &mut Dev, rows: usize, dim: usize) {
    d.reset();
    let mut rng = seed(&[rows as u64, dim as u64]);
    let mut x: Vec<W> = halves(&mut rng, rows * dim, 3.0);
    let w: Vec<W> = halves(&mut rng, dim, 1.0);
    let (bx, bw) = (d.put(&x), d.put(&w));
    d.ops.head_rmsnorm(bx, bw, rows as u64, dim as u64, 1e-6).unwrap();
    W::head_rmsnorm(&mut x, &w, rows, dim, 1e-6);
    // The sums differ in order (a warp's tree against a serial loop): one rounding step either way.
    check(&format!("head_rmsnorm {} {rows}x{dim}", W::DT), &wide(&d.get::<W>(bx)), &wide(&x), 1e-6, 2.0 * W::ulp());
}

#[test]
fn head_rmsnorm_matches_its_twin() {
    let Some(mut d) = dev("head_rmsnorm_matches_its_twin") else { return };
    // (rows = tokens x heads, head_dim): decode and prefill, every head size up to 256, odd ones.
    for (rows, dim) in [(1, 64), (40, 128), (7, 16), (33 * 8, 128), (9, 256), (3, 40), (17, 1)] {
        head_rmsnorm_case::<f16>(&mut d, rows, dim);
        head_rmsnorm_case::<bf16>(&mut d, rows, dim);
    }
}

/// The flash prefill kernel (`attn_prefill.cu`) against its streaming twin
/// (`djinn_kernels::flash`): `t` query rows at `p0..`, heads `h` over `kv`,
/// a window or none. The rows after each cache plane's `p0 + t` are poisoned
/// (NaN), so a tile that let one through would show. Both round the probabilities to
/// the model dtype at the same point with the same running maxima; they
/// differ by summation order and the device's exp2, so a probability may
/// round one step apart: atol one such step of the largest |v|.
#[allow(clippy::too_many_arguments)]
fn attn_prefill_case<W: Twin>(d: &mut Dev, t: usize, p0: usize, h: usize, kv: usize, hd: usize, window: Option<u64>) {
    d.reset();
    let mut rng = seed(&[t as u64, p0 as u64, h as u64, kv as u64, hd as u64, window.unwrap_or(0)]);
    let (seq, kv_dim) = (p0 + t, kv * hd);
    let (kc, vc): (Vec<W>, Vec<W>) = (halves(&mut rng, seq * kv_dim, 1.0), halves(&mut rng, seq * kv_dim, 1.0));
    let q: Vec<W> = halves(&mut rng, t * h * hd, 1.5);
    // Each cache plane is followed by a tile of poisoned rows.
    let bkc = d.put(&kc);
    d.alloc(64 * kv_dim as u64, W::DT);
    let bvc = d.put(&vc);
    d.alloc(64 * kv_dim as u64, W::DT);
    let bq = d.put(&q);
    let bo = d.alloc((t * h * hd) as u64, W::DT);
    let shape = AttnShape {
        tokens: t as u64,
        pos0: p0 as u64,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window,
        header: None,
    };
    assert!(d.ops.try_attn_prefill(bo, bq, bkc, bvc, shape).unwrap(), "attn_prefill takes head_dim {hd}");
    let mut want = vec![W::from_f32(f32::NAN); t * h * hd];
    let win = window.filter(|&w| (w as usize) < seq).unwrap_or(0) as usize;
    W::attn_prefill(&mut want, &q, &kc, &vc, t, p0, h, kv, hd, win);
    let vmax = wide(&vc).iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let tag = format!("{} t{t} p{p0} h{h}/{kv}x{hd} window {window:?}", W::DT);
    check(&format!("attn_prefill {tag}"), &wide(&d.get::<W>(bo)), &wide(&want), W::ulp() * vmax / 2.0, 2.0 * W::ulp());
}

#[test]
fn attn_prefill_matches_its_twin() {
    let Some(mut d) = dev("attn_prefill_matches_its_twin") else { return };
    // (tokens, pos0, heads, kv heads, head_dim, window)
    for (t, p0, h, kv, hd, w) in [
        (512, 0, 40, 40, 128, None),    // Llama-2-13B's prefill
        (512, 0, 32, 8, 128, None),     // Llama-3-8B's: grouped-query
        (2, 0, 4, 4, 16, None),         // the smallest prefill
        (77, 0, 6, 2, 16, None),        // odd, one partial query block
        (130, 0, 4, 1, 32, None),       // multi-query, three query blocks
        (100, 37, 8, 2, 64, None),      // a chunk after a prefix not on a tile edge
        (65, 64, 4, 4, 128, None),      // a chunk after a prefix of one whole tile
        (3, 500, 8, 8, 128, None),      // a short chunk over a long cache
        (300, 0, 4, 2, 64, Some(50)),   // a window shorter than a tile: both edges masked
        (200, 0, 2, 2, 128, Some(64)),  // a window of exactly one tile
        (90, 150, 4, 2, 32, Some(100)), // a window reaching back into the prefix
        (40, 10, 2, 1, 16, Some(1)),    // each row sees only itself
        (50, 0, 2, 2, 64, Some(4096)),  // a window wider than the sequence
    ] {
        attn_prefill_case::<f16>(&mut d, t, p0, h, kv, hd, w);
        attn_prefill_case::<bf16>(&mut d, t, p0, h, kv, hd, w);
    }
}

#[test]
fn prefill_attention_needs_no_scores_scratch() {
    let Some(mut d) = dev("prefill_attention_needs_no_scores_scratch") else { return };
    // Through `Ops::attention`, as the forward pass calls it, with a one-element
    // scratch: the flash path takes the shape and never touches it.
    let (t, h, kv, hd) = (70usize, 4usize, 2usize, 64usize);
    let mut rng = seed(&[t as u64, 7]);
    let (kc, vc): (Vec<f16>, Vec<f16>) = (halves(&mut rng, t * kv * hd, 1.0), halves(&mut rng, t * kv * hd, 1.0));
    let q: Vec<f16> = halves(&mut rng, t * h * hd, 1.0);
    let (bkc, bvc, bq) = (d.put(&kc), d.put(&vc), d.put(&q));
    let (bs, bo) = (d.alloc(1, Dtype::F32), d.alloc((t * h * hd) as u64, Dtype::F16));
    let shape = AttnShape {
        tokens: t as u64,
        pos0: 0,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window: None,
        header: None,
    };
    d.ops.attention(bo, bq, bkc, bvc, bs, shape).unwrap();
    let mut want = vec![f16::from_f32(f32::NAN); t * h * hd];
    f16::attn_prefill(&mut want, &q, &kc, &vc, t, 0, h, kv, hd, 0);
    check("attention (flash) f16", &wide(&d.get::<f16>(bo)), &wide(&want), 2e-3, 2.0 * f16::ulp());
    assert!(d.get_f32(bs)[0].is_nan(), "the scratch was written");
}

#[test]
fn prefill_on_cublas_runs_in_row_chunks_that_fit_the_scratch() {
    let Some(mut d) = dev("prefill_on_cublas_runs_in_row_chunks_that_fit_the_scratch") else { return };
    // Without the flash kernel (a device before 8.0, or DJINN_FLASH=0) and a
    // scratch sized for it, the cuBLAS path takes the rows a few at a time:
    // room for 2 rows' scores here, so 44 rows run as 22 passes of 2 rows
    // (none of 1, which the decode kernel would take); each must match the
    // materialising twin as one pass does.
    let (t, p0, h, kv, hd) = (44usize, 20usize, 4usize, 2usize, 64usize);
    let seq = p0 + t;
    let mut rng = seed(&[t as u64, 11]);
    let (kc, vc): (Vec<bf16>, Vec<bf16>) = (halves(&mut rng, seq * kv * hd, 1.0), halves(&mut rng, seq * kv * hd, 1.0));
    let q: Vec<bf16> = halves(&mut rng, t * h * hd, 1.0);
    let (bkc, bvc, bq) = (d.put(&kc), d.put(&vc), d.put(&q));
    let bs = d.alloc((2 * h * seq.div_ceil(8) * 8) as u64, Dtype::F32);
    let bo = d.alloc((t * h * hd) as u64, Dtype::Bf16);
    let shape = AttnShape {
        tokens: t as u64,
        pos0: p0 as u64,
        num_heads: h as u64,
        num_kv_heads: kv as u64,
        head_dim: hd as u64,
        rope: RopeTable::unscaled(hd as u64, 1e4),
        window: None,
        header: None,
    };
    d.ops.set_flash(false);
    let r = d.ops.attention(bo, bq, bkc, bvc, bs, shape);
    d.ops.set_flash(true);
    r.unwrap();
    let mut want = vec![bf16::from_f32(f32::NAN); t * h * hd];
    let mut scores = vec![0f32; h * t * seq];
    bf16::attention(&mut want, &q, &kc, &vc, &mut scores, t, p0, h, kv, hd, 0);
    check("attention in row chunks bf16", &wide(&d.get::<bf16>(bo)), &wide(&want), 1e-3, 2.0 * bf16::ulp());
}
