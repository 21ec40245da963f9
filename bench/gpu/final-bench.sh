#!/bin/bash
# The session's closing GPU call: the attention test that failed in merged-check.sh with its whole
# output, every GPU test again (the fine table's CUDA runs among them), examples/cuda_ops, then
# bench/run.py side by side at the 22 GiB cap with the KV cache sized to the run (512 + 50 = 562
# positions) and the budget sweep, from the committed profile. Binaries in $BIN; results in $OUT.
set -o pipefail
B=${BIN:-.device/bin}
[ -d "$B" ] || tar xzf .device/bin.tgz -C .device
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== the failing attention test"; date
timeout 60 $B/djinn-test cuda::kernels::kv_store_and_attention --nocapture --test-threads=1 2>&1 | tail -25
echo "== GPU tests"; date
timeout 240 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
echo "== cuda_ops"; date
timeout 100 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; grep -A14 "^-- prefill" $OUT/cuda-ops.txt | head -16
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
  --out /tmp/bench --sweep --gpu profiles/h200-measured.toml --deadline ${DEADLINE:-300} 2>&1 | tail -30
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
