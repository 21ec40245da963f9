#!/bin/bash
# Run from the repository root on the GPU machine, with the release binaries (and the stripped
# integration-test binary as djinn-test, examples/cuda_ops as cuda_ops) in $BIN (default .device/bin);
# results go to $OUT.
# Final validation: every GPU test with the final binaries, djinn-profile, per-op timings, a traced 22 GiB run.
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
# The test binary finds tests/fixtures at the path it was built in (/work/main).
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels
echo "== GPU tests"; date
timeout 240 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 2>&1 | grep -E "^test |skipped|test result|panicked|mismatch" 
echo "== profile"; date
timeout 120 $B/djinn-profile --model llama2-13b --prompt-len 512 -o $OUT/profile.toml --json $OUT/profile.json 2>&1 | tail -30
echo "== cuda_ops"; $B/cuda_ops 2>&1
echo "== synth + traced 22GiB run"; date
$B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
$B/djinn-compile --gpu profiles/h200-measured.toml --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 -o /tmp/plan.toml 2>&1 | tail -3
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
$B/djinn-exec /tmp/plan.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json $OUT/m22.json --trace /tmp/trace22.json 2>&1 | tail -12
gzip -c /tmp/trace22.json > $OUT/trace22.json.gz
date
