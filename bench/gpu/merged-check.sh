#!/bin/bash
# One call after merging issues 11-13's work: every GPU test (each kernel against its CPU twin, every
# fixture -- the newer families included -- through the CUDA backend against transformers' reference
# and the CPU backend), the whole-run tests with DJINN_FUSED=0, examples/cuda_ops (decode ops' GB/s,
# flash prefill against cuBLAS), Llama-2-13B TTFT and decode fully resident, at 22 GiB with the KV
# cache sized to the run, and a 3584-token prompt at 22 GiB; then the newer families at real shapes
# on synthesised weights, as time allows. Run from the repository root, binaries in $BIN; results
# in $OUT (at most 8 files).
set -o pipefail
B=${BIN:-.device/bin}
[ -d "$B" ] || tar xzf .device/bin.tgz -C .device
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
T0=$(date +%s); left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; ls -la tests/fixtures/tiny-qwen2/tokenizer.json
echo "== GPU tests"; date
timeout 300 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |skipped|test result|panicked|mismatch|: ok, max|worst|first" /tmp/gpu-tests.txt | head -300 > $OUT/gpu-tests.txt
grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head -20
echo "== GPU runs, DJINN_FUSED=0"; date
DJINN_FUSED=0 timeout 120 $B/djinn-test cuda::runs:: --test-threads=1 > /tmp/gpu-unfused.txt 2>&1
grep -E "test result|panicked|FAILED" /tmp/gpu-unfused.txt | head; grep -E "^test " /tmp/gpu-unfused.txt >> $OUT/gpu-tests.txt
echo "== cuda_ops"; date
timeout 120 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== 13B"; date
for len in 512 3584; do
  python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range($len-1)]))" > /tmp/ids-$len.txt
done
for run in "30GiB 512 562" "22GiB 512 562" "22GiB 3584 4096"; do
  set -- $run; budget=$1; len=$2; seq=$3
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $budget --model /tmp/llama2-13b --prompt-len $len \
    --max-seq-len $seq -o /tmp/plan-$budget-$len.toml 2>&1 | grep -E "activations|predicted|host CPU" | head -3
  for rep in 1 2; do
    timeout 120 $B/djinn-exec /tmp/plan-$budget-$len.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
      --prompt-ids /tmp/ids-$len.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$budget-$len-$rep.json > /tmp/exec-$budget-$len-$rep.txt 2>&1 \
      || tail -5 /tmp/exec-$budget-$len-$rep.txt
    python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('$budget', '$len', 'rep $rep', {k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ('ttft', 'decode_ms', 'peak'))})" /tmp/m-$budget-$len-$rep.json
  done
done
md5sum /tmp/exec-30GiB-512-1.txt /tmp/exec-22GiB-512-1.txt | cut -c1-8
tar czf $OUT/metrics.tgz /tmp/m-*.json /tmp/plan-*.toml 2>/dev/null
echo "== newer families at real shapes (synthesised weights)"; date
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(4607)]))" > /tmp/ids-long.txt
for m in qwen2.5-7b mistral-7b-v0.1 qwen3-8b llama3.1-8b; do
  [ $(left) -lt 70 ] && { echo "skipping $m: $(left) s left"; continue; }
  ids=/tmp/ids-512.txt; pl=512; ms=1024
  if [ $m = mistral-7b-v0.1 ]; then ids=/tmp/ids-long.txt; pl=1024; ms=8192; fi
  timeout 100 $B/djinn-synth --model $m -o /tmp/$m 2>&1 | tail -1
  $B/djinn-compile --gpu profiles/h200-measured.toml --model /tmp/$m --prompt-len $pl --max-seq-len $ms -o /tmp/$m.toml 2>&1 | grep -E "predicted" | head -2
  timeout 60 $B/djinn-exec /tmp/$m.toml --weights /tmp/$m --backend cuda --prompt-ids $ids --max-new-tokens 32 --ignore-eos --json /tmp/f-$m.json 2>&1 | tail -3
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('$m', {k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ('ttft', 'decode_ms'))})" /tmp/f-$m.json
  rm -rf /tmp/$m
done
tar czf $OUT/families.tgz /tmp/f-*.json 2>/dev/null
date
