#!/bin/bash
# Issue 11/12 tuning, second call: the CUDA tests (the fine MLP split across the bus among
# them), examples/cuda_ops' decode ops with GEMV_WARPS 8 (the default), 4 and 2 and with
# ATTN_UNROLL 4 (the default is now 8, V loaded with K), then Llama-2-13B fully resident with
# each GEMV_WARPS, alternating, and at the 22 GiB cap (KV for 562 positions: the plan that
# streams down blocks alone and host-computes some of them). Binaries in $BIN. (Run once,
# 2026-12-02 20:35 UTC, bench/results/2026-12-02-h200-decode-tune2/: V loaded with K made no
# difference to attention, 8.9 against 8.8 us, and was dropped; GEMV_WARPS 4 became the default.)
. bench/gpu/lib.sh
echo "== GPU tests"; date
timeout ${TEST_S:-150} $B/djinn-test cuda:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked|mismatch|first" /tmp/gpu-tests.txt | head -80 > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
grep -B2 -A25 "panicked" /tmp/gpu-tests.txt | head -120 >> $OUT/gpu-tests.txt
grep -E "split|fine" /tmp/gpu-tests.txt | head -20
echo "== cuda_ops"; date
for d in "" "-DGEMV_WARPS=4" "-DGEMV_WARPS=2" "-DATTN_UNROLL=4"; do
  echo "-- DJINN_NVRTC_DEFINES='$d'"
  DJINN_NVRTC_DEFINES="$d" timeout 90 $B/cuda_ops 2>&1 | sed -n '/-- decode/,/-- decode (1 tokens at position 512), unfused/p' | tee -a $OUT/cuda-ops.txt
done
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
P=profiles/h200-measured.toml
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu $P --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted|host CPU|streamed:" | head -3
done
echo "== resident runs"; date
for rep in 1 2; do
  run_exec res-w8-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-w4-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_WARPS=4
  run_exec res-w2-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_WARPS=2
done
echo "== 22 GiB runs"; date
run_exec cap-1 /tmp/plan-22GiB.toml X=1
run_exec cap-2 /tmp/plan-22GiB.toml X=1
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
date
