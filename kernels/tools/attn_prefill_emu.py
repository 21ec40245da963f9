"""Emulates kernels/cuda/attn_prefill.cu's data movement on the CPU, to check its index arithmetic
without a GPU: ldmatrix (.x4, with and without .trans) and mma.m16n8k16's fragment layouts are
written from the PTX ISA's description, the kernel's tile loads, swizzle, masks and online softmax
are a line-by-line mirror of the .cu (keep them in step when it changes), and the output is compared
with attention computed directly in f64 (cache rows past the sequence are NaN, so an unmasked or
unfilled row shows). f16 only; the bf16 kernel differs in its mma and pack instructions alone.

    python3 kernels/tools/attn_prefill_emu.py        # a few shapes: D 16..128, pos0 > 0, GQA, windows

Slow (pure Python per lane): shapes of a few hundred rows at most. Needs numpy.
"""
import numpy as np, sys
PF_M = PF_N = 64
NEG_INF = -np.inf

def swz(D, row, ch):
    C = D // 8; M = min(C, 8) - 1
    return row * D + ((ch ^ (row & M)) << 3)

def load_tile(D, smem, base, g, stride, row0, limit):
    C = D // 8
    for idx in range(64 * C):
        r, c = idx // C, idx % C
        off = base + swz(D, r, c)
        if row0 + r < limit:
            smem[off:off+8] = g[(row0 + r) * stride + c * 8:(row0 + r) * stride + c * 8 + 8]
        else:
            smem[off:off+8] = 0

def ldsm(smem, addrs, trans=False):
    # addrs[lane] = element offset of a 16-byte row; returns regs[lane][i] = (lo, hi) for matrix i
    out = [[None]*4 for _ in range(32)]
    for i in range(4):
        mat = np.stack([smem[addrs[8*i+j]:addrs[8*i+j]+8] for j in range(8)])  # [row][col]
        for l in range(32):
            if not trans:
                r, c = l // 4, 2 * (l % 4)
                out[l][i] = (mat[r, c], mat[r, c+1])
            else:
                out[l][i] = (mat[2*(l%4), l//4], mat[2*(l%4)+1, l//4])
    return out

def mma(c, a, b0, b1):
    # c[lane][4] floats, a[lane][4] pairs, b0/b1[lane] pairs
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        for e in range(2):
            A[g, 2*t+e] = a[l][0][e]; A[g+8, 2*t+e] = a[l][1][e]
            A[g, 2*t+8+e] = a[l][2][e]; A[g+8, 2*t+8+e] = a[l][3][e]
            B[2*t+e, g] = b0[l][e]; B[2*t+8+e, g] = b1[l][e]
            C[g, 2*t+e] = c[l][e]; C[g+8, 2*t+e] = c[l][2+e]
    Dm = A.astype(np.float32) @ B.astype(np.float32) + C
    for l in range(32):
        g, t = l // 4, l % 4
        for e in range(2):
            c[l][e] = Dm[g, 2*t+e]; c[l][2+e] = Dm[g+8, 2*t+e]

def f16(x): return np.float32(np.float16(x))

def kernel(out, q, kc, vc, tokens, pos0, heads, kv_heads, D, window):
    q_dim, kv_dim = heads * D, kv_heads * D
    seq = pos0 + tokens
    scale_log2 = np.float32(np.log2(np.e) / np.sqrt(D))
    nblk = (tokens + 63) // 64
    for bx in range(nblk):
        for h in range(heads):
            mblk = nblk - 1 - bx
            kvh = h // (heads // kv_heads)
            m0 = mblk * PF_M
            smem = np.zeros(192 * D, np.float32)
            sq, sk, sv = 0, PF_M * D, (PF_M + PF_N) * D
            qf_ = q.reshape(-1); kf_ = kc.reshape(-1); vf_ = vc.reshape(-1)
            # global views: base offset added
            def gview(arr, off): return arr[off:]
            first_q = pos0 + m0
            last_q = pos0 + min(m0 + PF_M, tokens) - 1
            kend = last_q + 1
            kbeg = first_q + 1 - window if (window != 0 and first_q + 1 > window) else 0
            tile_lo, tile_hi = kbeg // PF_N, (kend + PF_N - 1) // PF_N
            load_tile(D, smem, sq, gview(qf_, h*D), q_dim, m0, tokens)
            load_tile(D, smem, sk, gview(kf_, kvh*D), kv_dim, tile_lo*PF_N, seq)
            warps = []
            for w in range(4):
                warps.append(dict(o=[[[0.0]*4 for _ in range(32)] for _ in range(D//8)],
                                  m=[[NEG_INF]*2 for _ in range(32)], l=[[0.0]*2 for _ in range(32)], qf=None))
            for tile in range(tile_lo, tile_hi):
                n0 = tile * PF_N
                load_tile(D, smem, sv, gview(vf_, kvh*D), kv_dim, n0, seq)
                pas = []
                for w in range(4):
                    W = warps[w]
                    if tile == tile_lo:
                        W['qf'] = [ldsm(smem, [sq + swz(D, w*16 + (l & 15), kk*2 + (l >> 4)) for l in range(32)]) for kk in range(D//16)]
                    s = [[[0.0]*4 for _ in range(32)] for _ in range(PF_N//8)]
                    for kk in range(D//16):
                        for np_ in range(PF_N//16):
                            b = ldsm(smem, [sk + swz(D, np_*16 + (l & 7) + ((l >> 4) << 3), kk*2 + ((l >> 3) & 1)) for l in range(32)])
                            mma(s[2*np_], W['qf'][kk], [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
                            mma(s[2*np_+1], W['qf'][kk], [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])
                    masked = n0 + PF_N - 1 > first_q or (window != 0 and n0 + window <= last_q)
                    for l in range(32):
                        g, tig = l // 4, l % 4
                        qpos = [pos0 + m0 + w*16 + g, pos0 + m0 + w*16 + g + 8]
                        for j in range(PF_N//8):
                            for e in range(4):
                                v = np.float32(s[j][l][e]) * scale_log2
                                if masked:
                                    key = n0 + j*8 + tig*2 + (e & 1); p = qpos[e >> 1]
                                    if key > p or (window != 0 and key + window <= p): v = NEG_INF
                                s[j][l][e] = v
                    alpha = [[0, 0] for _ in range(32)]
                    for r in range(2):
                        mx = [max(max(s[j][l][2*r], s[j][l][2*r+1]) for j in range(PF_N//8)) for l in range(32)]
                        mx = [max(mx[l], mx[l ^ 1]) for l in range(32)]
                        mx = [max(mx[l], mx[l ^ 2]) for l in range(32)]
                        for l in range(32):
                            m_new = max(W['m'][l][r], mx[l]); m_use = 0.0 if m_new == NEG_INF else m_new
                            alpha[l][r] = np.exp2(W['m'][l][r] - m_use); W['m'][l][r] = m_new
                            sm = 0.0
                            for j in range(PF_N//8):
                                s[j][l][2*r] = np.exp2(s[j][l][2*r] - m_use); s[j][l][2*r+1] = np.exp2(s[j][l][2*r+1] - m_use)
                                sm += s[j][l][2*r] + s[j][l][2*r+1]
                            W['l'][l][r] = W['l'][l][r] * alpha[l][r] + sm
                    for j in range(D//8):
                        for l in range(32):
                            for e in range(4): W['o'][j][l][e] *= alpha[l][e >> 1]
                    pa = [[[None]*4 for _ in range(32)] for _ in range(PF_N//16)]
                    for kk in range(PF_N//16):
                        for l in range(32):
                            pa[kk][l][0] = (f16(s[2*kk][l][0]), f16(s[2*kk][l][1]))
                            pa[kk][l][1] = (f16(s[2*kk][l][2]), f16(s[2*kk][l][3]))
                            pa[kk][l][2] = (f16(s[2*kk+1][l][0]), f16(s[2*kk+1][l][1]))
                            pa[kk][l][3] = (f16(s[2*kk+1][l][2]), f16(s[2*kk+1][l][3]))
                    pas.append(pa)
                for w in range(4):
                    W = warps[w]; pa = pas[w]
                    for kk in range(PF_N//16):
                        for dp in range(D//16):
                            b = ldsm(smem, [sv + swz(D, kk*16 + (l & 15), dp*2 + (l >> 4)) for l in range(32)], trans=True)
                            mma(W['o'][2*dp], pa[kk], [b[l][0] for l in range(32)], [b[l][1] for l in range(32)])
                            mma(W['o'][2*dp+1], pa[kk], [b[l][2] for l in range(32)], [b[l][3] for l in range(32)])
                if tile + 1 < tile_hi:
                    load_tile(D, smem, sk, gview(kf_, kvh*D), kv_dim, n0 + PF_N, seq)
            for w in range(4):
                W = warps[w]
                for r in range(2):
                    for l in range(32):
                        g, tig = l // 4, l % 4
                        ll = W['l'][l][r] + W['l'][l ^ 1][r]; ll2 = W['l'][l ^ 2][r] + W['l'][l ^ 3][r]
                        tot = ll + ll2
                        inv = 1.0 / tot if tot > 0 else 0.0
                        row = m0 + w*16 + g + 8*r
                        if row < tokens:
                            for j in range(D//8):
                                col = h*D + j*8 + tig*2
                                out[row, col] = f16(W['o'][j][l][2*r] * inv); out[row, col+1] = f16(W['o'][j][l][2*r+1] * inv)

def reference(q, kc, vc, tokens, pos0, heads, kvh, D, window):
    out = np.zeros((tokens, heads*D))
    for t in range(tokens):
        p = pos0 + t; lo = max(0, p + 1 - window) if window else 0
        for h in range(heads):
            g = h // (heads // kvh)
            K = kc[lo:p+1, g*D:(g+1)*D].astype(np.float64); V = vc[lo:p+1, g*D:(g+1)*D].astype(np.float64)
            s = K @ q[t, h*D:(h+1)*D].astype(np.float64) / np.sqrt(D)
            e = np.exp(s - s.max()); out[t, h*D:(h+1)*D] = (e @ V) / e.sum()
    return out

def case(tokens, pos0, heads, kvh, D, window, seed=0):
    rng = np.random.default_rng(seed)
    seq = pos0 + tokens
    q = np.float16(rng.standard_normal((tokens, heads*D)) * 1.5).astype(np.float32)
    kc = np.float16(rng.standard_normal((seq + 64, kvh*D))).astype(np.float32)
    vc = np.float16(rng.standard_normal((seq + 64, kvh*D))).astype(np.float32)
    kc[seq:] = np.nan; vc[seq:] = np.nan
    out = np.full((tokens, heads*D), np.nan, np.float32)
    w = window if (window and window < seq) else 0
    kernel(out, q, kc, vc, tokens, pos0, heads, kvh, D, w)
    ref = reference(q, kc[:seq], vc[:seq], tokens, pos0, heads, kvh, D, w)
    err = np.abs(out - ref)
    tol = 2e-3 * 4 + 2e-3 * np.abs(ref)
    bad = ~(err <= tol)
    print(f"t={tokens} pos0={pos0} {heads}/{kvh}x{D} window={window}: max err {np.nanmax(err):.2e}, bad {bad.sum()} of {bad.size}", flush=True)
    return bad.sum() == 0

if __name__ == "__main__":
    ok = True
    for c in [(5, 0, 1, 1, 16, 0), (70, 0, 2, 1, 16, 0), (20, 50, 2, 2, 32, 0), (130, 0, 1, 1, 16, 30),
              (40, 80, 2, 1, 16, 64), (66, 0, 1, 1, 64, 0), (20, 3, 2, 1, 128, 0), (10, 60, 1, 1, 128, 8)]:
        ok &= case(*c)
    print("ALL OK" if ok else "FAILURES")
    sys.exit(0 if ok else 1)
    