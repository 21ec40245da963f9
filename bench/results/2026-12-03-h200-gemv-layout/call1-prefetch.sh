#!/bin/bash
# As run at 14:26 UTC with binaries of the tree before commit a2bdf9a, where the prefetch was a
# compile-time define (GEMV_PREFETCH, every product alike) and rows per warp GEMV_ROWS; a2bdf9a made
# both the host's choice by shape (gemv_layout). The second call (call2-*) ran the same binaries with
# the variants of call2-log.txt.
# Issue 11: gemv's L2 prefetch ahead of its loads (GEMV_PREFETCH bytes of each row, 0 = none)
# measured at several distances, and the prefill's elementwise kernels on their 16-byte paths
# (add, silu_mul, rmsnorm), in one short call: the tests of those kernels (gemv also with a
# prefetch), examples/cuda_ops' decode shape under each distance and its prefill shape once,
# then Llama-2-13B fully resident under each distance, alternating (plans from the committed
# profile). Binaries in $BIN.
. bench/gpu/lib.sh
echo "== tests"; date
timeout 150 $B/djinn-test cuda::kernels::gemv cuda::kernels::rmsnorm cuda::kernels::silu_mul --test-threads=1 > /tmp/t.txt 2>&1
DJINN_NVRTC_DEFINES=-DGEMV_PREFETCH=4096 timeout 100 $B/djinn-test cuda::kernels::gemv --test-threads=1 >> /tmp/t.txt 2>&1
grep -E "^test |test result|panicked" /tmp/t.txt | head -20; cp /tmp/t.txt $OUT/tests.txt
echo "== cuda_ops"; date
for p in 0 2048 4096 8192 16384; do
  echo "-- GEMV_PREFETCH=$p"
  DJINN_NVRTC_DEFINES="-DGEMV_PREFETCH=$p" timeout 40 $B/cuda_ops --random 1 --reps 30 --prefill 0 2>&1 \
    | sed -n '/^device-to-device/p; /fused: GEMV kernels/,/one layer, back to back$/p' | tee -a $OUT/cuda-ops.txt \
    | grep -E "^-- |qkv|o_proj|gate_up|down|lm_head|back to back$"
done
timeout 60 $B/cuda_ops --random 1 --reps 30 > $OUT/cuda-ops-full.txt 2>&1; sed -n '/-- prefill/,/no PDL/p' $OUT/cuda-ops-full.txt | head -14
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt
$B/djinn-compile --gpu profiles/h200-measured.toml --budget 30GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-30GiB.toml 2>&1 | grep -E "predicted" | head -1
echo "== runs"; date
for rep in 1 2; do for p in 0 4096 8192 16384; do
  run_exec res-p$p-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_PREFETCH=$p
done; done
tar czf $OUT/metrics.tgz /tmp/m-*.json 2>/dev/null
date
