#!/bin/bash
# Issue 11: gemv's one-row products with their loads rolling (GEMV_ROLL=1, the default: each slot
# reloaded as soon as its products are done) against the loads in rounds (GEMV_ROLL=0: all of a
# round's loads, then all its products), in one short call: the GEMV tests, examples/cuda_ops'
# decode shape with each, then Llama-2-13B fully resident with each, alternating, and at the
# 22 GiB cap while time is left (plans from the committed profile). Binaries in $BIN.
. bench/gpu/lib.sh
echo "== tests"; date
timeout 100 $B/djinn-test cuda::kernels::gemv --test-threads=1 > /tmp/t.txt 2>&1
grep -E "^test |test result|panicked" /tmp/t.txt | head -20; cp /tmp/t.txt $OUT/tests.txt
echo "== cuda_ops"; date
for rep in 1; do for d in "" "-DGEMV_ROLL=0"; do
  echo "-- DJINN_NVRTC_DEFINES='$d'"
  DJINN_NVRTC_DEFINES="$d" timeout 40 $B/cuda_ops --random 1 --reps 30 --prefill 0 2>&1 \
    | sed -n '/^device-to-device/p; /fused: GEMV kernels/,/one layer, back to back$/p' | tee -a $OUT/cuda-ops.txt \
    | grep -E "^-- |qkv|o_proj|gate_up|down|lm_head|back to back$"
done; done
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
for rep in 1 2; do
  run_exec res-roll-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-rounds-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_ROLL=0
done
if [ $SECONDS -lt ${STOP_AT:-150} ]; then
  run_exec cap-roll-1 /tmp/plan-22GiB.toml X=1
  run_exec cap-rounds-1 /tmp/plan-22GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_ROLL=0
fi
tar czf $OUT/metrics.tgz /tmp/m-*.json 2>/dev/null
date
