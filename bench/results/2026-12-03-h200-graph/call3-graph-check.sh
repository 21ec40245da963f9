#!/bin/bash
# As run in call 3 (14:51 UTC): the plain `wait` after gpu_tests also waited for the log's tee, so the
# call hung there until its limit; the later scripts wait for the synth job alone. Its GPU tests
# (34 of 35 passed; djinn-profile did not stage the pass header yet) are in call3-gpu-tests.txt.
# Issue 11: the decode step as one captured CUDA graph (runtime/src/cuda/graph.rs), with the pass
# header the decode kernels read the position from, and gemv's layout by shape. In one call: every
# GPU test; examples/cuda_ops (decode and prefill, random operands); Llama-2-13B fully resident with
# the graph and with DJINN_GRAPH=0 (op by op), alternating, three runs each; one 22 GiB run (a
# host-computing plan: op by op). Plans from the committed profile. Binaries in $BIN.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
wait $synth; tail -1 /tmp/synth.txt
echo "== cuda_ops"; date
timeout 90 $B/cuda_ops --random 1 --reps 30 > $OUT/cuda-ops.txt 2>&1
grep -E "^device|^rmsnorm|^qkv|^rope|^attention|^o_proj|^gate_up|^down|^lm_head|^one layer|^-- " $OUT/cuda-ops.txt | head -40
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
for rep in 1 2 3; do
  run_exec res-graph-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-direct-$rep /tmp/plan-30GiB.toml DJINN_GRAPH=0
done
run_exec cap-1 /tmp/plan-22GiB.toml X=1
tar czf $OUT/metrics.tgz /tmp/m-*.json 2>/dev/null
date
