#!/bin/bash
# GPU tests, examples/cpu_layer, then the 22 GiB 13B run with --host-compute auto and off (MODES),
# each traced; with argument `bench`, and when auto decodes under MAXDEC ms/token, bench/gpu/bench.sh.
# Run from the repository root on the GPU machine with the binaries in $BIN (default .device/bin).
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels
echo "== GPU tests"; date
[ "$SKIP_TESTS" = 1 ] || timeout 200 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 2>&1 | grep -E "^test |skipped|test result|panicked|mismatch|host-compute" | head -60
echo "== cpu_layer"; $B/cpu_layer --reps 10 2>&1
echo "== synth"; $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
for h in ${MODES:-auto off}; do
  echo "== 22GiB host-compute $h"; date
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 --host-compute $h -o /tmp/plan-$h.toml 2>&1 | tail -3
  timeout 120 $B/djinn-exec /tmp/plan-$h.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$h.json --trace /tmp/trace-$h.json 2>&1 | tail -10
done
gzip -c /tmp/trace-auto.json > $OUT/trace-host.json.gz
ok=$(python3 -c "import json; a=json.load(open('/tmp/m-auto.json')); print(int(a['decode_ms_per_token']<${MAXDEC:-80}))" 2>&1); echo "host run ok: $ok"
[ "$1" = bench ] && [ "$ok" = 1 ] && BIN=$B DEADLINE=${DEADLINE:-400} bash bench/gpu/bench.sh
date
