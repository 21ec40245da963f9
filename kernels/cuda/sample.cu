// Sampling on the device: out[0] = the token djinn_kernels::sample_f32_with
// (kernels/src/sample.rs, the twin) chooses from n f32 logits with this
// temperature, top_k, top_p, min_p and uniform u, without the repetition
// penalty (that needs the sequence; the runtime keeps it on the host). So
// only the chosen id comes back to the host, not the [vocab] row. One block
// of 1024 threads.
//
// No sort. The probabilities p_i = sample_exp((l_i - max) / T) are
// recomputed in every pass, operation for operation as the twin computes
// them (`__f*_rn` intrinsics: NVRTC's --fmad=true would otherwise fuse them),
// so both see the same bits. Positive floats order like their bit patterns,
// so a cut "the first k" or "the shortest prefix reaching mass m" of the
// twin's order (p descending, lower id first among equals) is a threshold
// bit pattern tau plus how many of the tokens exactly at tau (in id order)
// it keeps; a radix select finds tau in three passes (11, 11 and 9 bits),
// each building a histogram of counts and fixed-point masses of the
// candidates (sample_fix: integers, so the sums are exact and independent of
// the order the atomics land in, as in the twin). Tokens without mass
// (NaN, or more than 28 T below the max: p < 2^-40) are never candidates;
// they cannot be chosen, and leaving them out changes no cut that matters.
// min-p is a floor on p (the most likely token's p is exactly 1). The token
// is then the first kept one, in id order, whose running mass exceeds
// floor(u * kept mass): each warp sums its contiguous segment of ids, and
// the warp whose segment holds the target walks it with a warp scan.

#define SAMPLE_THREADS 1024
#define SAMPLE_WARPS 32
#define SAMPLE_BINS 2048
#define SAMPLE_ALL 0xffffffffu
#define SAMPLE_ONE 0x3f800000u  // the bits of 1.0f

typedef unsigned long long u64;

// The twin's sample_exp (Cephes' expf), the same operations in the same
// order; the constants are its literals' bits.
__device__ __forceinline__ float sample_exp(float x) {
    if (!(x >= -87.0f)) return 0.0f;
    if (x > 0.0f) x = 0.0f;
    const float k = floorf(__fadd_rn(__fmul_rn(x, __uint_as_float(0x3fb8aa3bu)), 0.5f));
    float r = __fsub_rn(x, __fmul_rn(k, __uint_as_float(0x3f318000u)));
    r = __fsub_rn(r, __fmul_rn(k, __uint_as_float(0xb95e8083u)));
    const float z = __fmul_rn(r, r);
    float y = __uint_as_float(0x39506967u);
    y = __fadd_rn(__fmul_rn(y, r), __uint_as_float(0x3ab743ceu));
    y = __fadd_rn(__fmul_rn(y, r), __uint_as_float(0x3c088908u));
    y = __fadd_rn(__fmul_rn(y, r), __uint_as_float(0x3d2aa9c1u));
    y = __fadd_rn(__fmul_rn(y, r), __uint_as_float(0x3e2aaaaau));
    y = __fadd_rn(__fmul_rn(y, r), 0.5f);
    y = __fadd_rn(__fadd_rn(__fmul_rn(y, z), r), 1.0f);
    return __fmul_rn(y, __int_as_float(((int)k + 127) << 23));
}

// The twin's sample_fix: floor(p * 2^40).
__device__ __forceinline__ u64 sample_fix(float p) {
    return __float2ull_rz(__fmul_rn(p, 1099511627776.0f));
}

// Token i's probability bits and mass; false if it has no mass. `cut` is
// -28.5 T: a logit further below the max has p < 2^-40 (mass 0), so its
// division and exp are skipped.
__device__ __forceinline__ bool sample_prob(float l, float mx, float t, float cut, u32& bits, u64& mass) {
    const float d = __fsub_rn(l, mx);
    if (!(d >= cut)) return false;
    const float p = sample_exp(__fdiv_rn(d, t));
    mass = sample_fix(p);
    bits = __float_as_uint(p);
    return mass != 0;
}

// The radix select's three levels: digit shift, digit bits.
__device__ __forceinline__ int level_shift(int level) { return level == 0 ? 20 : level == 1 ? 9 : 0; }
__device__ __forceinline__ int level_bits(int level) { return level == 2 ? 9 : 11; }

struct Select {
    u32 prefix;      // the bits of tau found so far (the levels above this one)
    u32 above_count; // candidates whose bits are above every value the prefix allows
    u64 above_mass;
    double target;   // top-p: the mass the kept prefix must reach
    u32 digit;       // this level's digit (written by sample_pick)
    u32 found;       // 0 if no digit meets the criterion (top-k of more than there are)
};

// One pass over the logits: counts and masses, by this level's digit, of the
// candidates (mass > 0, bits >= lo) whose bits above the digit equal `prefix`.
__device__ void sample_histogram(const float* logits, u32 n, float mx, float t, float cut, u32 lo, u32 prefix,
                                 int level, u32* cnt, u64* mass) {
    const int shift = level_shift(level), hi = shift + level_bits(level);
    const u32 nb = 1u << level_bits(level);
    for (u32 d = threadIdx.x; d < nb; d += blockDim.x) { cnt[d] = 0; mass[d] = 0; }
    __syncthreads();
    for (u32 i = threadIdx.x; i < n; i += blockDim.x) {
        u32 b;
        u64 m;
        if (!sample_prob(logits[i], mx, t, cut, b, m) || b < lo || (b >> hi) != prefix) continue;
        const u32 d = (b >> shift) & (nb - 1);
        atomicAdd(&cnt[d], 1u);
        atomicAdd(&mass[d], m);
    }
    __syncthreads();
}

// Warp 0: the largest digit d whose candidates at or above it (with those
// above the prefix) reach k tokens (by_mass false) or s.target of mass (by
// mass; at level 0 the target is first set to top_p of the candidates'
// whole mass). Updates s.above_* to the candidates above d.
__device__ void sample_pick(const u32* cnt, const u64* mass, int level, bool by_mass, u32 k, float top_p,
                            Select& s) {
    const u32 lane = threadIdx.x & 31, nb = 1u << level_bits(level), per = nb / 32;
    u32 c = 0;
    u64 m = 0;
    for (u32 j = 0; j < per; j++) { c += cnt[lane * per + j]; m += mass[lane * per + j]; }
    // Inclusive suffix sums over lanes: this lane's bins and all above.
    u32 sc = c;
    u64 sm = m;
    for (int o = 1; o < 32; o <<= 1) {
        const u32 tc = __shfl_down_sync(0xffffffffu, sc, o);
        const u64 tm = __shfl_down_sync(0xffffffffu, sm, o);
        if (lane + o < 32) { sc += tc; sm += tm; }
    }
    double target = s.target;
    if (by_mass && level == 0) target = (double)top_p * __ull2double_rn(s.above_mass + __shfl_sync(0xffffffffu, sm, 0));
    const bool meets = by_mass ? __ull2double_rn(s.above_mass + sm) >= target : s.above_count + sc >= k;
    const u32 ballot = __ballot_sync(0xffffffffu, meets);
    if (ballot == 0) {
        if (lane == 0) s.found = 0;
        return;
    }
    const u32 top = 31 - __clz(ballot);
    if (lane == top) {
        u32 ac = s.above_count + (sc - c);
        u64 am = s.above_mass + (sm - m);
        for (int d = (int)(lane * per + per - 1); d >= (int)(lane * per); d--) {
            const u32 nc = ac + cnt[d];
            const u64 nm = am + mass[d];
            if (by_mass ? __ull2double_rn(nm) >= target : nc >= k) {
                s.digit = (u32)d;
                break;
            }
            ac = nc;
            am = nm;
        }
        s.above_count = ac;
        s.above_mass = am;
        s.prefix = (s.prefix << level_bits(level)) | s.digit;
        s.target = target;
        s.found = 1;
    }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_f32(u32* out, const float* logits, u32 n,
                                                                       float temperature, u32 top_k, float top_p,
                                                                       float min_p, float u) {
    grid_dependency();
    __shared__ u32 cnt[SAMPLE_BINS];
    __shared__ u64 mass[SAMPLE_BINS];
    __shared__ float red_v[SAMPLE_WARPS];
    __shared__ u32 red_i[SAMPLE_WARPS];
    __shared__ u64 warp_mass[SAMPLE_WARPS];
    __shared__ u32 warp_ties[SAMPLE_WARPS];
    __shared__ Select s;
    __shared__ u32 cut_tau, cut_q, walk_warp, walk_base, first_one;
    __shared__ u64 walk_r;
    const u32 tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    // The argmax (the first on ties, NaN never): the max for p, and the answer when greedy.
    float bv = NEG_INF;
    u32 bi = SAMPLE_ALL;
    for (u32 i = tid; i < n; i += blockDim.x) {
        const float v = logits[i];
        if (v > bv || (bi == SAMPLE_ALL && v == bv)) { bv = v; bi = i; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_down_sync(0xffffffffu, bv, o);
        const u32 oi = __shfl_down_sync(0xffffffffu, bi, o);
        if (oi != SAMPLE_ALL && (bi == SAMPLE_ALL || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    if (lane == 0) { red_v[warp] = bv; red_i[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        bv = red_v[lane];
        bi = red_i[lane];
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_down_sync(0xffffffffu, bv, o);
            const u32 oi = __shfl_down_sync(0xffffffffu, bi, o);
            if (oi != SAMPLE_ALL && (bi == SAMPLE_ALL || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
        }
        if (lane == 0) { red_v[0] = bv; red_i[0] = bi; }
    }
    __syncthreads();
    const float mx = red_v[0];
    const u32 argmax = red_i[0] == SAMPLE_ALL ? 0u : red_i[0];
    if (!(temperature > 0.0f) || !isfinite(mx)) {
        if (tid == 0) out[0] = argmax;
        return;
    }
    const float t = temperature, cut = __fmul_rn(-28.5f, t);
    const float tp = isnan(top_p) ? 1.0f : fminf(fmaxf(top_p, 0.0f), 1.0f);
    const float floor_p = min_p > 0.0f ? min_p : 0.0f;  // min_p times the first token's p, 1

    // Nothing but the most likely token (the lowest id with p = 1) is kept.
    if (tp <= 0.0f || floor_p > 1.0f) {
        if (tid == 0) first_one = SAMPLE_ALL;
        __syncthreads();
        for (u32 i = tid; i < n; i += blockDim.x) {
            u32 b;
            u64 m;
            if (sample_prob(logits[i], mx, t, cut, b, m) && b == SAMPLE_ONE) atomicMin(&first_one, i);
        }
        __syncthreads();
        if (tid == 0) out[0] = first_one == SAMPLE_ALL ? argmax : first_one;
        return;
    }

    // Top-k: tau_k, and how many of the tokens at tau_k it keeps.
    u32 tau_k = 0, q_k = SAMPLE_ALL, excess_k = 0;
    if (top_k > 0) {
        if (tid == 0) { s.prefix = 0; s.above_count = 0; s.above_mass = 0; s.found = 1; }
        __syncthreads();
        for (int level = 0; level < 3; level++) {
            sample_histogram(logits, n, mx, t, cut, 0, s.prefix, level, cnt, mass);
            if (warp == 0) sample_pick(cnt, mass, level, false, top_k, tp, s);
            __syncthreads();
            if (!s.found) break;  // no more candidates than k: no cut
        }
        if (s.found) {
            tau_k = s.prefix;
            q_k = top_k - s.above_count;
            excess_k = cnt[s.digit] - q_k;
        }
        __syncthreads();
    }
    u32 tau = tau_k, q = q_k;

    // Top-p within the top k: the tokens at tau_k beyond q_k are taken out of the histograms.
    if (tp < 1.0f) {
        const u64 mass_k = sample_fix(__uint_as_float(tau_k));
        if (tid == 0) { s.prefix = 0; s.above_count = 0; s.above_mass = 0; s.found = 1; }
        __syncthreads();
        for (int level = 0; level < 3; level++) {
            sample_histogram(logits, n, mx, t, cut, tau_k, s.prefix, level, cnt, mass);
            const int shift = level_shift(level), hi = shift + level_bits(level);
            if (tid == 0 && excess_k > 0 && (tau_k >> hi) == s.prefix) {
                const u32 d = (tau_k >> shift) & ((1u << level_bits(level)) - 1);
                cnt[d] -= excess_k;
                mass[d] -= (u64)excess_k * mass_k;
            }
            __syncthreads();
            if (warp == 0) sample_pick(cnt, mass, level, true, 0, tp, s);
            __syncthreads();
        }
        // The fewest of the tokens at tau that reach the target, in id order.
        if (tid == 0) {
            const u64 f = sample_fix(__uint_as_float(s.prefix));
            u32 lo = 1, hi = cnt[s.digit];
            while (lo < hi) {
                const u32 mid = lo + (hi - lo) / 2;
                if (__ull2double_rn(s.above_mass + (u64)mid * f) >= s.target) hi = mid; else lo = mid + 1;
            }
            cut_tau = s.prefix;
            cut_q = lo;
        }
        __syncthreads();
        tau = cut_tau;
        q = cut_q;
    }

    // Kept: mass, above tau (or at tau among its first q in id order), p >= floor_p.
    // Each warp sums its segment of ids: the mass above tau and the count at it.
    const u32 seg = (n + SAMPLE_WARPS - 1) / SAMPLE_WARPS;
    const u32 seg_lo = min(n, warp * seg), seg_hi = min(n, seg_lo + seg);
    const float floor_f = floor_p;
    u64 wm = 0;
    u32 wt = 0;
    for (u32 i = seg_lo + lane; i < seg_hi; i += 32) {
        u32 b;
        u64 m;
        if (!sample_prob(logits[i], mx, t, cut, b, m)) continue;
        if (b > tau && __uint_as_float(b) >= floor_f) wm += m;
        else if (b == tau) wt++;
    }
    for (int o = 16; o > 0; o >>= 1) {
        wm += __shfl_down_sync(0xffffffffu, wm, o);
        wt += __shfl_down_sync(0xffffffffu, wt, o);
    }
    if (lane == 0) { warp_mass[warp] = wm; warp_ties[warp] = wt; }
    __syncthreads();
    // Thread 0: each warp's kept mass (its share of the first q tokens at
    // tau), the target r, and the warp whose segment holds it.
    if (tid == 0) {
        const u64 f_tau = __uint_as_float(tau) >= floor_f ? sample_fix(__uint_as_float(tau)) : 0;
        u64 total = 0;
        u32 before = 0;
        for (int w = 0; w < SAMPLE_WARPS; w++) {
            const u32 here = warp_ties[w];
            const u32 kept = q > before ? min(q - before, here) : 0;
            warp_ties[w] = before;  // from here on: the tokens at tau in the warps before
            before += here;
            warp_mass[w] += (u64)kept * f_tau;
            total += warp_mass[w];
        }
        const float uu = u > 0.0f ? u : 0.0f;
        const u64 r = min(__double2ull_rz(__dmul_rn((double)uu, __ull2double_rn(total))), total - 1);
        out[0] = argmax;  // overwritten below; only a broken invariant would leave it
        walk_warp = SAMPLE_WARPS;
        u64 cum = 0;
        for (int w = 0; w < SAMPLE_WARPS; w++) {
            if (cum + warp_mass[w] > r) {
                walk_warp = w;
                walk_r = r - cum;
                walk_base = warp_ties[w];
                break;
            }
            cum += warp_mass[w];
        }
    }
    __syncthreads();
    if (warp != walk_warp) return;
    // That warp walks its segment, 32 ids at a time, with an inclusive scan of the kept masses.
    const u64 r = walk_r;
    u64 acc = 0;
    u32 ties_seen = walk_base;
    for (u32 base = seg_lo; base < seg_hi; base += 32) {
        const u32 i = base + lane;
        u32 b = 0;
        u64 m = 0;
        const bool has = i < seg_hi && sample_prob(logits[i], mx, t, cut, b, m);
        const bool tie = has && b == tau;
        const u32 tb = __ballot_sync(0xffffffffu, tie);
        const u32 rank = ties_seen + __popc(tb & ((1u << lane) - 1u));
        ties_seen += __popc(tb);
        const bool kept = has && __uint_as_float(b) >= floor_f && (b > tau || (tie && rank < q));
        u64 incl = kept ? m : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const u64 v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= (u32)o) incl += v;
        }
        const u32 hit = __ballot_sync(0xffffffffu, kept && acc + incl > r);
        if (hit) {
            if (lane == (u32)(__ffs(hit) - 1)) out[0] = i;
            return;
        }
        acc += __shfl_sync(0xffffffffu, incl, 31);
    }
}
