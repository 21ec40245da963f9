#!/bin/bash
# The last call of the 2026-12-03 evening session (issue 11), binaries of the committed code: every
# GPU test, then Llama-2-13B fully resident with the decode graph and op by op (DJINN_GRAPH=0),
# alternating, and one 22 GiB run, plans from profiles/h200-measured.toml (measured at 15:02 UTC).
# Binaries in $BIN; what it writes in $OUT/all.tgz.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
wait $synth; tail -1 /tmp/synth.txt
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
for rep in 1 2; do
  run_exec res-graph-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-direct-$rep /tmp/plan-30GiB.toml DJINN_GRAPH=0
done
run_exec cap-1 /tmp/plan-22GiB.toml X=1
mkdir -p /tmp/o; cp /tmp/m-*.json /tmp/o/; mv $OUT/gpu-tests.txt /tmp/o/; tar czf $OUT/all.tgz -C /tmp o
date
