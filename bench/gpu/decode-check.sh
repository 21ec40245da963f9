#!/bin/bash
# Issue 11's check, in one call: the GPU tests (every kernel against its CPU twin, backends agreeing),
# examples/cuda_ops (each decode op fused and unfused, GB/s beside the device-to-device copy measured
# in the same run), djinn-profile re-measured (the profile the compiler's predictions come from), then
# 13B fully resident and at the 22 GiB cap, fused and unfused (DJINN_FUSED=0) alternating, in one lease.
# Run from the repository root with the binaries in $BIN; at most 8 files go to $OUT.
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main; [ -e /work/w11 ] || ln -s "$PWD" /work/w11
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
echo "== GPU tests"; date
timeout 200 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |skipped|test result|panicked|mismatch|: ok, max" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
echo "== cuda_ops"; date
timeout 120 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== profile"; date
timeout 150 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $OUT/h200-measured.toml 2>&1 | tail -4
grep -E "^#     (prefill|decode)" $OUT/h200-measured.toml
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
P=$OUT/h200-measured.toml; [ -s $P ] || P=profiles/h200-measured.toml
for budget in 30GiB 22GiB; do
  $B/djinn-compile --gpu $P --budget $budget --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 -o /tmp/plan-$budget.toml 2>&1 | grep -E "predicted|decode|prefill" | head -4
done
echo "== fused (with and without programmatic dependent launch) vs unfused, alternating"; date
for rep in 1 2; do
  for budget in 30GiB 22GiB; do
    for cfg in fused unfused fused-nopdl; do
      case $cfg in fused) env="DJINN_FUSED=1 DJINN_PDL=1";; unfused) env="DJINN_FUSED=0 DJINN_PDL=1";; *) env="DJINN_FUSED=1 DJINN_PDL=0";; esac
      env $env timeout 100 $B/djinn-exec /tmp/plan-$budget.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
        --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$budget-$cfg-$rep.json > /tmp/exec-$budget-$cfg-$rep.txt 2>&1 \
        || tail -5 /tmp/exec-$budget-$cfg-$rep.txt
      python3 - "$budget" "$cfg" "$rep" /tmp/m-$budget-$cfg-$rep.json <<'PY'
import json, sys
b, c, r, p = sys.argv[1:]
try:
    m = json.load(open(p))
except Exception as e:
    print(b, c, "rep", r, "no metrics:", e); sys.exit()
keys = {k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ("ttft", "decode_ms", "predicted_decode", "predicted_ttft"))}
print(b, c, "rep", r, json.dumps(keys, sort_keys=True))
PY
    done
  done
done
# The same generated tokens on every path.
for f in /tmp/exec-*-1.txt; do echo "$f $(head -c 300 $f | md5sum | cut -c1-8)"; done
tar czf $OUT/metrics.tgz /tmp/m-*.json 2>/dev/null
date
