#!/bin/bash
# Issue 11, the copy-engine GEMV and the batched prefill products, one call: the CUDA tests
# (gemv_bulk against gemv's twin at every epilogue, the batched products against theirs),
# examples/cuda_ops with random operands (every 13B decode product on gemv and on gemv_bulk,
# prefill batched and one by one), then Llama-2-13B fully resident as plans run it (GEMV by
# shape, batched prefill), with gemv for every product (DJINN_GEMV=warp) and with the prefill
# products one by one (DJINN_BATCHED=0), alternating; and at the 22 GiB cap, by shape and warp.
# Binaries in $BIN; plans from the committed profile.
. bench/gpu/lib.sh
echo "== GPU tests"; date
timeout ${TEST_S:-200} $B/djinn-test cuda:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked|mismatch|first" /tmp/gpu-tests.txt | head -80 > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
grep -B2 -A25 "panicked" /tmp/gpu-tests.txt | head -150 >> $OUT/gpu-tests.txt
echo "== cuda_ops"; date
timeout 150 $B/cuda_ops --random 1 --reps 30 > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt
P=${PROFILE:-profiles/h200-measured.toml}
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu $P --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted|host CPU|streamed:" | head -3
done
echo "== resident runs"; date
for rep in 1 2; do
  run_exec res-auto-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-warp-$rep /tmp/plan-30GiB.toml DJINN_GEMV=warp
  run_exec res-nobatch-$rep /tmp/plan-30GiB.toml DJINN_BATCHED=0
done
echo "== 22 GiB runs"; date
run_exec cap-auto-1 /tmp/plan-22GiB.toml X=1
run_exec cap-warp-1 /tmp/plan-22GiB.toml DJINN_GEMV=warp
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
date
