#!/bin/bash
# Issue 11, 2026-12-07 (third session), call 2: issue 11's cap target side by side in one run —
# this tree ("new", c75d9d0: the decode step's device segments as CUDA graphs; "new-g0": the same
# binary with DJINN_GRAPH=0) against section 1a's binary ("1a", 80034e2; $B/djinn-exec-1a) on its
# own plans ($B/old-{30,22}.toml: compiled on the development machine by 80034e2's djinn-compile
# from its profiles/h200-measured.toml, --prompt-len 512 --max-seq-len 562, as in section 1a).
# Every GPU test; djinn-synth's 13B checkpoint; djinn-profile of the lease and this tree's 30 GiB
# and 22 GiB plans compiled from it; three runs of each binary on its resident plan and at the cap,
# in turn; then each cap plan and each resident plan traced and broken down
# (bench/gpu/trace_breakdown.py): new with its graphs (a span per segment), new-g0 and 1a a span
# per block. Binaries in $BIN; what it writes in $OUT (log.txt, gpu-tests.txt, lease.toml, o.tgz).
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
cp $B/old-30.toml /tmp/plan-1a-30GiB.toml; cp $B/old-22.toml /tmp/plan-1a-22GiB.toml
echo "== runs"; date
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-30-$rep /tmp/plan-30GiB.toml X=1
  EXEC=$B/djinn-exec-1a run_exec 1a-30-$rep /tmp/plan-1a-30GiB.toml X=1
done
for rep in 1 2 3; do
  EXEC=$B/djinn-exec run_exec new-22-$rep /tmp/plan-22GiB.toml X=1
  EXEC=$B/djinn-exec run_exec new-g0-22-$rep /tmp/plan-22GiB.toml DJINN_GRAPH=0
  EXEC=$B/djinn-exec-1a run_exec 1a-22-$rep /tmp/plan-1a-22GiB.toml X=1
done
mkdir -p /tmp/o
for b in 22GiB 30GiB; do
  for who in new new-g0 1a; do
    g=X=1; exe=$B/djinn-exec; plan=/tmp/plan-$b.toml
    [ $who = new-g0 ] && g=DJINN_GRAPH=0
    [ $who = 1a ] && exe=$B/djinn-exec-1a && plan=/tmp/plan-1a-$b.toml
    EXEC=$exe EXTRA="--trace /tmp/trace-$who-$b.json" run_exec trace-$who-$b $plan $g
    python3 bench/gpu/trace_breakdown.py /tmp/trace-$who-$b.json $plan > /tmp/o/trace-breakdown-$who-$b.txt 2>&1
    tail -3 /tmp/o/trace-breakdown-$who-$b.txt
  done
done
echo "== peak device memory (GiB), decode graph replays, per run"
python3 - <<'PY'
import glob, json
for p in sorted(glob.glob("/tmp/m-*.json")):
    m = json.load(open(p))
    print(p[7:-5], round((m.get("peak_device_bytes") or 0) / 2**30, 3), (m.get("device") or {}).get("decode_graph_replays"))
PY
cp /tmp/m-*.json /tmp/plan-*.toml /tmp/o/; cp $OUT/gpu-tests.txt /tmp/o/
tar czf $OUT/o.tgz -C /tmp o
date
