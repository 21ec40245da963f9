#!/bin/bash
# The GEMV rewrite's check (issue 11), in one call: the CUDA tests (every kernel against its CPU twin,
# the fixtures through the CUDA backend), examples/cuda_ops (each decode op's GB/s beside a device
# copy measured in the same run), then Llama-2-13B fully resident and at the 22 GiB cap, fused and
# unfused (DJINN_FUSED=0) alternating, and at 22 GiB with the KV cache sized to the run (562
# positions) beside 1024. Run from the repository root with the binaries in $BIN.
set -o pipefail
B=${BIN:-.device/bin}
[ -d "$B" ] || tar xzf .device/bin.tgz -C .device
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU tests"; date
timeout ${TEST_S:-150} $B/djinn-test cuda:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked|mismatch|first" /tmp/gpu-tests.txt | head -80 > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
echo "== cuda_ops"; date
timeout 120 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
P=profiles/h200-measured.toml
for cfg in 30GiB:1024 22GiB:1024 22GiB:562; do
  b=${cfg%:*}; s=${cfg#*:}
  $B/djinn-compile --gpu $P --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len $s -o /tmp/plan-$b-$s.toml 2>&1 | grep -E "predicted|host|chose" | head -4
done
echo "== runs"; date
for rep in 1 2; do
  for cfg in 30GiB:1024 22GiB:1024 22GiB:562; do
    for fused in 1 0; do
      [ $fused = 0 ] && [ $cfg != 30GiB:1024 ] && continue
      b=${cfg%:*}; s=${cfg#*:}; tag=$b-$s-f$fused-$rep
      DJINN_FUSED=$fused timeout 100 $B/djinn-exec /tmp/plan-$b-$s.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
        --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$tag.json > /tmp/exec-$tag.txt 2>&1 || tail -5 /tmp/exec-$tag.txt
      python3 - "$tag" /tmp/m-$tag.json <<'PY'
import json, sys
t, p = sys.argv[1:]
try:
    m = json.load(open(p))
except Exception as e:
    print(t, "no metrics:", e); sys.exit()
print(t, json.dumps({k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ("ttft", "decode_ms", "peak"))}, sort_keys=True))
PY
    done
  done
done
for f in /tmp/exec-*-1.txt; do echo "$f $(head -c 300 $f | md5sum | cut -c1-8)"; done
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
date
