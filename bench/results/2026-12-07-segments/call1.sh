#!/bin/bash
# Issue 11, 2026-12-07 (third session), call 1: the decode step's device segments as CUDA graphs
# (runtime/src/cuda/graph.rs) — "new" (this tree), "new-g0" (the same binary with DJINN_GRAPH=0:
# every op enqueued one by one, as every plan with events or host computes ran before) and "prev"
# (244f2ee, the previous HEAD: one graph for fully resident plans only; $B/djinn-exec-prev).
# Every GPU test of this tree; djinn-synth's 13B checkpoint; djinn-profile of the lease; the 30 GiB
# (fully resident) and 22 GiB plans compiled from it; then, in turn, three runs of each binary on
# each plan; then each plan traced by new (graphs: one span per segment's graph) and new-g0 (one
# span per block) and broken down (bench/gpu/trace_breakdown.py).
# Binaries in $BIN; what it writes in $OUT (log.txt, gpu-tests.txt, lease.toml, o.tgz).
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
wait $synth; tail -1 /tmp/synth.txt
profile_lease /tmp/lease.toml; cp /tmp/lease.toml $OUT/
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu /tmp/lease.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 \
    -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-30-$rep /tmp/plan-30GiB.toml X=1
  EXEC=$B/djinn-exec-prev run_exec prev-30-$rep /tmp/plan-30GiB.toml X=1
done
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-22-$rep /tmp/plan-22GiB.toml X=1
  EXEC=$B/djinn-exec run_exec new-g0-22-$rep /tmp/plan-22GiB.toml DJINN_GRAPH=0
  EXEC=$B/djinn-exec-prev run_exec prev-22-$rep /tmp/plan-22GiB.toml X=1
done
mkdir -p /tmp/o
for b in 22GiB 30GiB; do
  for who in new new-g0; do
    g=X=1; [ $who = new-g0 ] && g=DJINN_GRAPH=0
    EXEC=$B/djinn-exec EXTRA="--trace /tmp/trace-$who-$b.json" run_exec trace-$who-$b /tmp/plan-$b.toml $g
    python3 bench/gpu/trace_breakdown.py /tmp/trace-$who-$b.json /tmp/plan-$b.toml > /tmp/o/trace-breakdown-$who-$b.txt 2>&1
    tail -3 /tmp/o/trace-breakdown-$who-$b.txt
  done
done
echo "== peak device memory (GiB), per run"
python3 - <<'PY'
import glob, json
for p in sorted(glob.glob("/tmp/m-*.json")):
    m = json.load(open(p))
    print(p[7:-5], round((m.get("peak_device_bytes") or 0) / 2**30, 3), (m.get("device") or {}).get("decode_graph_replays"))
PY
cp /tmp/m-*.json /tmp/plan-*.toml /tmp/o/; cp $OUT/gpu-tests.txt /tmp/o/
tar czf $OUT/o.tgz -C /tmp o
date
