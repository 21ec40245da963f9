#!/bin/bash
# The closing call of the 2026-12-03 afternoon session (issue 11): every GPU test; djinn-profile of
# this lease (-o $OUT/h200-measured.toml, committed as profiles/h200-measured.toml); bench/run.py's
# main table at 22 GiB and the budgets 17, 26 and 30 GiB (26 and 30: fully resident), every plan
# compiled from that profile; examples/cuda_ops with random operands (each decode op's GB/s beside a
# device copy in the same run, prefill batched and one by one, cuBLASLt's candidates for each
# prefill product); last, while time is left, gemv's decode products under DJINN_NVRTC_DEFINES
# variants with more of each warp's rows in flight. Binaries in $BIN (or .device/bin.tgz). (GEMV_X_EARLY,
# which the variants set, was removed after this call: the one-row products now take rolling loads.)
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
gpu_tests
P=$OUT/h200-measured.toml
profile_lease $P
$B/djinn-compile --gpu $P --model /tmp/llama2-13b --budget 22GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-22.toml 2> $OUT/summary-22GiB.txt
grep -hE "^host CPU|^predicted|^streamed:" $OUT/summary-22GiB.txt
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
  --out /tmp/bench --gpu $P --sweep --sweep-budgets 17,26,30 --deadline ${DEADLINE:-230} 2>&1 | tail -24
echo "== cuda_ops"; date
timeout 120 $B/cuda_ops --reps 30 --random 1 --lt 8 > $OUT/cuda-ops-random.txt 2>&1
grep -E "^device|^qkv|^o_proj|^gate_up|^down|^lm_head|^one layer|^-- |default" $OUT/cuda-ops-random.txt | head -60
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
echo "== gemv variants"; date
for d in "-DGEMV_UNROLL=6 -DGEMV_X_EARLY=0 -DGEMV_SM_WARPS=20" "-DGEMV_UNROLL=8 -DGEMV_X_EARLY=0 -DGEMV_SM_WARPS=16" "-DGEMV_X_EARLY=0" ""; do
  [ $SECONDS -gt ${STOP_AT:-470} ] && { echo "stopped: $SECONDS s"; break; }
  echo "-- DJINN_NVRTC_DEFINES='$d'"
  DJINN_NVRTC_DEFINES="$d" timeout 40 $B/cuda_ops --random 1 --reps 30 --prefill 0 2>&1 \
    | sed -n '/^device-to-device/p; /fused: GEMV kernels/,/one layer, back to back$/p' | tee -a $OUT/gemv-variants.txt \
    | grep -E "^-- |qkv|o_proj|gate_up|down|lm_head|back to back$"
done
(cd $OUT && tar czf extras.tgz cuda-ops-random.txt gpu-tests.txt profile-log.txt summary-22GiB.txt gemv-variants.txt 2>/dev/null && rm -f cuda-ops-random.txt gpu-tests.txt profile-log.txt summary-22GiB.txt gemv-variants.txt)
date
