#!/bin/bash
# The host-lane run of issue 9, in one call: djinn-profile (with the whole host-layer measurement)
# written to $OUT, a traced 22 GiB 13B run with --host-compute auto and off compiled against that
# profile (the per-layer breakdown), then the side-by-side benchmark and budget sweep against it.
# Run from the repository root on the GPU machine with the binaries in $BIN (default .device/bin).
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/env.txt
python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" | tee -a $OUT/env.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== profile"; date
P=$OUT/h200-measured.toml
timeout 240 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $P --json $OUT/profile.json 2>&1 | tail -25
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
for h in auto off; do
  echo "== 22GiB host-compute $h"; date
  $B/djinn-compile --gpu $P --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 --host-compute $h -o /tmp/plan-$h.toml 2>&1 | tail -6
  timeout 120 $B/djinn-exec /tmp/plan-$h.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$h.json --trace /tmp/trace-$h.json 2>&1 | tail -9
done
gzip -c /tmp/trace-auto.json > $OUT/trace-auto.json.gz
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 \
  --out /tmp/bench --sweep --gpu $P --deadline ${DEADLINE:-400} 2>&1 | tail -40
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
