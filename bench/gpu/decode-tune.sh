#!/bin/bash
# Issue 11's decode tuning, in one call: the CUDA tests, examples/cuda_ops with the GEMV's L2
# prefetch before the programmatic-launch wait at 0, 4096 (the default) and 16384 bytes a row
# (DJINN_NVRTC_DEFINES), then Llama-2-13B fully resident (KV for 562 positions) in alternating
# runs: the default, DJINN_STEP_TIMING=1 (every compute step bracketed by timing events, as before
# this change), GEMV_PREFETCH=0 and 16384; a traced resident run broken down by block (prefill and
# decode); and the 22 GiB cap with and without step timing. Run from the repository root with the
# binaries in $BIN. (Run once, 2026-12-02 20:19 UTC, bench/results/2026-12-02-h200-decode-tune/: the
# prefetch made every product slower and was removed, so GEMV_PREFETCH no longer exists.)
. bench/gpu/lib.sh
echo "== GPU tests"; date
timeout ${TEST_S:-150} $B/djinn-test cuda:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked|mismatch|first" /tmp/gpu-tests.txt | head -80 > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
grep -B2 -A25 "panicked" /tmp/gpu-tests.txt | head -120 >> $OUT/gpu-tests.txt
echo "== cuda_ops"; date
for pf in 4096 0 16384; do
  echo "-- GEMV_PREFETCH=$pf"
  DJINN_NVRTC_DEFINES="-DGEMV_PREFETCH=$pf" timeout 90 $B/cuda_ops 2>&1 | sed -n '/-- decode/,/-- decode (1 tokens at position 512), unfused/p' | tee -a $OUT/cuda-ops.txt
done
DJINN_NVRTC_DEFINES="-DGEMV_PREFETCH=4096" timeout 90 $B/cuda_ops > /tmp/cuda-ops-full.txt 2>&1; cat /tmp/cuda-ops-full.txt >> $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
P=profiles/h200-measured.toml
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu $P --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted|host CPU" | head -3
done
echo "== resident runs"; date
for rep in 1 2; do
  run_exec res-default-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-steptiming-$rep /tmp/plan-30GiB.toml DJINN_STEP_TIMING=1
  run_exec res-pf0-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_PREFETCH=0
  run_exec res-pf16k-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DGEMV_PREFETCH=16384
done
echo "== traced resident run"; date
EXTRA="--trace /tmp/trace-res.json" run_exec res-traced /tmp/plan-30GiB.toml X=1
python3 - /tmp/trace-res.json /tmp/plan-30GiB.toml <<'PY' | tee $OUT/trace-res.txt
import json, sys, statistics
ev = json.load(open(sys.argv[1]))["traceEvents"]
passes = sorted((e for e in ev if e.get("pid") == 1 and e.get("tid") == 3 and e.get("ph") == "X"), key=lambda e: e["ts"])
spans = [e for e in ev if e.get("pid") == 1 and e.get("ph") == "X" and e.get("tid") == 2]
for i, p in enumerate(passes[:3]):
    comp = sorted((e for e in spans if e["args"]["pass"] == i), key=lambda e: e["ts"])
    if not comp: continue
    busy = sum(e["dur"] for e in comp)
    print(f"pass {i} {p['name']}: pass {p['dur']:.1f} us, compute spans {busy:.1f} us, first at +{comp[0]['ts']-p['ts']:.1f}, last end at +{comp[-1]['ts']+comp[-1]['dur']-p['ts']:.1f}")
    by = {}
    for e in comp: by.setdefault(e["name"].split(".")[0] if not e["name"].startswith("layer") else "layer", []).append(e["dur"])
    for k, v in by.items(): print(f"   {k:10s} n={len(v):3d} sum {sum(v):9.1f} median {statistics.median(v):7.1f} max {max(v):7.1f}")
PY
echo "== 22 GiB runs"; date
run_exec cap-default /tmp/plan-22GiB.toml X=1
run_exec cap-steptiming /tmp/plan-22GiB.toml DJINN_STEP_TIMING=1
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
date
