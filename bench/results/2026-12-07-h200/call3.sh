#!/bin/bash
# Issue 11, 2026-12-07 (second session), call 3: only on an H200 (it stops at once on anything
# else). The tree as committed ("new", the binaries of call 2) and ba05b43 ("shipped") fully
# resident, three runs each in turn, on the 30 GiB plan compiled from call 1's profile of an H200
# lease (call1-lease.toml); the session's device time left no room to profile again.
. bench/gpu/lib.sh
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 || { echo "not an H200: stopping"; exit 0; }
$B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1; tail -1 /tmp/synth.txt
ids 512 0 > /tmp/ids.txt
$B/djinn-compile --gpu bench/results/2026-12-07-h200/call1-lease.toml --budget 30GiB --model /tmp/llama2-13b \
  --prompt-len 512 --max-seq-len 562 -o /tmp/plan-30GiB.toml 2>&1 | grep -E "predicted" | head -1
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-30-$rep /tmp/plan-30GiB.toml X=1
  EXEC=$B/djinn-exec-shipped run_exec shipped-30-$rep /tmp/plan-30GiB.toml X=1
done
mkdir -p /tmp/o; cp /tmp/m-*.json /tmp/o/; tar czf $OUT/all.tgz -C /tmp o
date
