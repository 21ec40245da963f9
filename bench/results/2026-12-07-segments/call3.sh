#!/bin/bash
# Issue 11, 2026-12-07 (third session), call 3: only on an H200 (it stops at once on anything
# else). This tree ("new", c75d9d0, the binaries of calls 1 and 2) against section 1a's binary
# ("1a", 80034e2) on the same plans as call 2 ($B/old-{30,22}.toml for 1a; this tree's compiled from
# the H200 lease profile of the previous session, bench/results/2026-12-07-h200/call1-lease.toml):
# three resident runs each in turn, two at the 22 GiB cap, then each cap plan traced and broken down.
. bench/gpu/lib.sh
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 || { echo "not an H200: stopping"; exit 0; }
$B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1; tail -1 /tmp/synth.txt
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu bench/results/2026-12-07-h200/call1-lease.toml --budget $b --model /tmp/llama2-13b \
    --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
cp $B/old-30.toml /tmp/plan-1a-30GiB.toml; cp $B/old-22.toml /tmp/plan-1a-22GiB.toml
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-30-$rep /tmp/plan-30GiB.toml X=1
  EXEC=$B/djinn-exec-1a run_exec 1a-30-$rep /tmp/plan-1a-30GiB.toml X=1
done
for rep in 1 2; do
  EXEC=$B/djinn-exec run_exec new-22-$rep /tmp/plan-22GiB.toml X=1
  EXEC=$B/djinn-exec-1a run_exec 1a-22-$rep /tmp/plan-1a-22GiB.toml X=1
done
mkdir -p /tmp/o
for who in new 1a; do
  exe=$B/djinn-exec; plan=/tmp/plan-22GiB.toml
  [ $who = 1a ] && exe=$B/djinn-exec-1a && plan=/tmp/plan-1a-22GiB.toml
  EXEC=$exe EXTRA="--trace /tmp/trace-$who.json" run_exec trace-$who-22GiB $plan X=1
  python3 bench/gpu/trace_breakdown.py /tmp/trace-$who.json $plan > /tmp/o/trace-breakdown-$who-22GiB.txt 2>&1
  tail -3 /tmp/o/trace-breakdown-$who-22GiB.txt
done
cp /tmp/m-*.json /tmp/plan-*.toml /tmp/o/; tar czf $OUT/o.tgz -C /tmp o
date
