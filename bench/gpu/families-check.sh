#!/bin/bash
# Issue 13's runtime check: the newer families (llama3 RoPE, Qwen2 biases, Qwen3 q/k norms and o bias,
# Mistral's sliding window) on the GPU. Run from the repository root on the GPU machine, with the
# stripped integration-test binary as djinn-test and the release binaries in $BIN (default
# .device/bin); results go to $OUT.
#  1. every GPU test: each kernel against its CPU twin (add_bias, head_rmsnorm, rope with scaled
#     tables, windowed softmax / prefill / decode attention among them) and every fixture through
#     the CUDA backend against transformers' float32 reference and against the CPU backend;
#  2. the whole-run tests again with the decode kernels off (DJINN_FUSED=0: cuBLAS, unfused rope);
#  3. smoke runs at real shapes on synthesised weights (no reference: that they run, and how fast):
#     qwen2.5-7b, qwen3-8b, llama3.1-8b resident, and mistral-7b-v0.1 with a prompt past its
#     4096-position window so the windowed decode kernel skips whole splits.
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
# The test binary finds tests/fixtures at the path it was built in.
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main; [ -e /work/wA ] || ln -s "$PWD" /work/wA
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU tests"; date
timeout 240 $B/djinn-test cuda:: --nocapture --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |skipped|test result|panicked|mismatch|: ok, max" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt
grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
echo "== GPU runs, DJINN_FUSED=0"; date
DJINN_FUSED=0 timeout 150 $B/djinn-test cuda::runs:: --nocapture --test-threads=1 > /tmp/gpu-unfused.txt 2>&1
grep -E "^test |test result|panicked|FAILED|max \|err\|" /tmp/gpu-unfused.txt > $OUT/gpu-unfused.txt
grep -E "test result|panicked|FAILED" /tmp/gpu-unfused.txt | head
echo "== real shapes, synthesised weights"; date
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(4607)]))" > /tmp/ids-long.txt
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
for m in qwen2.5-7b qwen3-8b llama3.1-8b mistral-7b-v0.1; do
  ids=/tmp/ids.txt; pl=512; ms=1024
  if [ $m = mistral-7b-v0.1 ]; then ids=/tmp/ids-long.txt; pl=1024; ms=8192; fi
  timeout 200 $B/djinn-synth --model $m -o /tmp/$m 2>&1 | tail -1
  $B/djinn-compile --gpu profiles/h200-measured.toml --model /tmp/$m --prompt-len $pl --max-seq-len $ms -o /tmp/$m.toml 2>&1 | grep -E "predicted" | head -2
  timeout 120 $B/djinn-exec /tmp/$m.toml --weights /tmp/$m --backend cuda --prompt-ids $ids --max-new-tokens 32 --ignore-eos --json $OUT/$m.json 2>&1 | tail -4
  rm -rf /tmp/$m  # ~16 GB each: one at a time on the 64 GiB disk
done
date
