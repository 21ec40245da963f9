#!/bin/bash
# The side-by-side benchmark of issue 12's split layers, in one call: the GPU tests, djinn-profile
# (to the log only: the host's bandwidth in this lease; the plans use the committed
# profiles/h200-measured.toml), a traced 22 GiB run with its per-block breakdown, then bench/run.py
# with the budget sweep. Run from the repository root with the binaries in $BIN.
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
P=profiles/h200-measured.toml
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU tests"; date
timeout 150 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 2>&1 | grep -E "^test |skipped|test result|panicked|mismatch|streamed" > $OUT/gpu-tests.txt; tail -3 $OUT/gpu-tests.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== profile (this lease's host and PCIe; not used by the plans)"; date
timeout 120 $B/djinn-profile --model llama2-13b --prompt-len 512 --name lease -o /tmp/lease.toml 2>&1 | grep -E "host-to-device|matrix-vector|host MLP|device-to-device"
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
echo "== traced 22GiB"; date
$B/djinn-compile --gpu $P --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 -o /tmp/plan-auto.toml 2>&1 | tail -4
timeout 100 $B/djinn-exec /tmp/plan-auto.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json $OUT/m-auto.json --trace /tmp/trace-auto.json 2>&1 | tail -9
python3 bench/gpu/trace_breakdown.py /tmp/trace-auto.json /tmp/plan-auto.toml > $OUT/trace-breakdown.txt 2>&1; tail -16 $OUT/trace-breakdown.txt
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 \
  --out /tmp/bench --sweep --gpu $P --deadline ${DEADLINE:-380} 2>&1 | tail -30
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
