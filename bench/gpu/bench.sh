#!/bin/bash
# Run from the repository root on the GPU machine, with the release binaries (and the stripped
# integration-test binary as djinn-test, examples/cuda_ops as cuda_ops) in $BIN (default .device/bin);
# results go to $OUT.
# The side-by-side benchmark (bench/run.py) on the device machine; binaries carried in .device/bin.
set -o pipefail
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/env.txt
python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" | tee -a $OUT/env.txt
python3 bench/run.py --bin "${BIN:-.device/bin}" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 \
  --out /tmp/bench --sweep --gpu profiles/h200-measured.toml --deadline ${DEADLINE:-530} 2>&1 | tee $OUT/run.log
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
tar czf $OUT/logs.tgz -C /tmp/bench logs plans metrics 2>/dev/null
ls -la $OUT
