#!/bin/bash
# Issue 11, first loads ahead of the launch wait: the CUDA tests, then examples/cuda_ops' decode
# ops with the default build (GEMV_PRELOAD 1, ATTN_EARLY 1), with GEMV_PRELOAD=0 and ATTN_EARLY=0
# (every load after the wait, as before), and with 4 rows a warp at 2 runs (GEMV_ROWS=4
# GEMV_UNROLL=2); then Llama-2-13B fully resident and at the 22 GiB cap, the default against
# both waits first, alternating. Binaries in $BIN.
. bench/gpu/lib.sh
echo "== GPU tests"; date
timeout ${TEST_S:-150} $B/djinn-test cuda:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked|mismatch|first" /tmp/gpu-tests.txt | head -80 > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
grep -B2 -A25 "panicked" /tmp/gpu-tests.txt | head -120 >> $OUT/gpu-tests.txt
LATE="-DGEMV_PRELOAD=0 -DATTN_EARLY=0"
echo "== cuda_ops"; date
for d in "" "$LATE" "-DGEMV_ROWS=4 -DGEMV_UNROLL=2" ""; do
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
for rep in 1 2 3; do
  run_exec res-early-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-late-$rep /tmp/plan-30GiB.toml "DJINN_NVRTC_DEFINES=$LATE"
done
run_exec res-r4u2 /tmp/plan-30GiB.toml "DJINN_NVRTC_DEFINES=-DGEMV_ROWS=4 -DGEMV_UNROLL=2"
echo "== 22 GiB runs"; date
for rep in 1 2; do
  run_exec cap-early-$rep /tmp/plan-22GiB.toml X=1
  run_exec cap-late-$rep /tmp/plan-22GiB.toml "DJINN_NVRTC_DEFINES=$LATE"
done
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
date
