#!/bin/bash
# After final-graph.sh (issue 11), a short call on a fresh machine: the 22 GiB and fully resident
# plans from the profile that call measured (profiles/h200-measured.toml), traced and broken down by
# block (bench/gpu/trace_breakdown.py), an untraced 22 GiB run, and the resident plan with the
# decode graph and op by op, alternating. Everything it writes is in $OUT/all.tgz.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt
mkdir -p /tmp/o
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
run_exec cap-1 /tmp/plan-22GiB.toml X=1
for rep in 3 4; do
  run_exec res-graph-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-direct-$rep /tmp/plan-30GiB.toml DJINN_GRAPH=0
done
for b in 22GiB 30GiB; do
  EXTRA="--trace /tmp/trace-$b.json" run_exec trace-$b /tmp/plan-$b.toml X=1
  python3 bench/gpu/trace_breakdown.py /tmp/trace-$b.json /tmp/plan-$b.toml > /tmp/o/trace-breakdown-$b.txt 2>&1
  tail -3 /tmp/o/trace-breakdown-$b.txt
done
cp /tmp/m-*.json /tmp/o/; gzip -c /tmp/trace-22GiB.json > /tmp/o/trace-22GiB.json.gz
tar czf $OUT/all.tgz -C /tmp o
date
