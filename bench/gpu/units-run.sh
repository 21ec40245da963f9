#!/bin/bash
# Issue 12's first part on the GPU machine, in one call: every GPU test, djinn-profile (the split
# one-layer model: attention and MLP halves timed on the device, the MLP on the host lane) written to
# $OUT/h200-measured.toml, then traced 22 GiB 13B runs compiled against that profile with split
# layers and host compute (auto), without host compute (off), and with whole layers (the plan before
# this change), all in the same lease. Run from the repository root with the binaries in $BIN.
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/env.txt
echo "== GPU tests"; date
timeout 200 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 2>&1 | grep -E "^test |skipped|test result|panicked|mismatch|streamed" | tee $OUT/gpu-tests.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== profile"; date
P=$OUT/h200-measured.toml
timeout 200 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $P --json $OUT/profile.json 2>&1 | tail -25
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
for v in "auto" "off" "layers"; do
  case $v in auto) X="--host-compute auto";; off) X="--host-compute off";; layers) X="--units layers";; esac
  echo "== 22GiB $v ($X)"; date
  $B/djinn-compile --gpu $P --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 $X -o /tmp/plan-$v.toml 2>&1 | tail -9
  timeout 100 $B/djinn-exec /tmp/plan-$v.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json $OUT/m-$v.json --trace /tmp/trace-$v.json 2>&1 | tail -9
done
gzip -c /tmp/trace-auto.json > $OUT/trace-auto.json.gz
date
