#!/bin/bash
# The benchmark of issue 11's decode kernels in one call, from the final binaries: the GPU tests,
# bench/run.py (Djinn at 22 GiB against transformers + accelerate, and the budget sweep, from the
# committed profiles/h200-measured.toml), then the 22 GiB plan behind djinn-serve against djinn-exec
# (bench/gpu/serve_vs_exec.py). Run from the repository root with the binaries in $BIN.
set -o pipefail
B=${BIN:-.device/bin}
[ -d "$B" ] || tar xzf .device/bin.tgz -C .device
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
P=profiles/h200-measured.toml
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU tests"; date
timeout 150 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result|panicked" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked" /tmp/gpu-tests.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 \
  --out /tmp/bench --sweep --gpu $P --deadline ${DEADLINE:-330} 2>&1 | tail -32
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
echo "== djinn-serve vs djinn-exec at 22 GiB"; date
$B/djinn-compile --gpu $P --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 -o /tmp/plan22.toml 2>&1 | grep predicted
timeout 150 python3 bench/gpu/serve_vs_exec.py --bin $B --plan /tmp/plan22.toml --weights /tmp/llama2-13b --out /tmp/serve --reps 3
cp /tmp/serve/serve-vs-exec.json $OUT/ 2>/dev/null; tail -5 /tmp/serve/serve.log
date
