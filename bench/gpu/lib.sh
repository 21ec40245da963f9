#!/bin/bash
# Shared by the GPU-machine scripts of bench/gpu/ that source it (from the repository root, with
# $OUT set by the device tool): unpack the carried binaries into $B, log to $OUT/log.txt, name
# the GPU; then ids (prompt token ids), run_exec (one djinn-exec run of a plan printing its timing
# metrics), gpu_tests and profile_lease.
set -o pipefail
B=${BIN:-.device/bin}
[ -d "$B" ] || tar xzf .device/bin.tgz -C .device
exec > >(tee -a $OUT/log.txt) 2>&1
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

# ids N SEED: N prompt token ids (BOS, then random ids of the 32000-token vocabulary), seeded.
ids() { python3 -c "import random; random.seed($2); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range($1-1)]))"; }

# run_exec TAG PLAN ENV...: djinn-exec ($EXEC, else $B/djinn-exec) on PLAN (the 512-token ids in
# /tmp/ids.txt, 50 greedy tokens, the budget enforced; $EXTRA appended) under the environment
# assignments ENV, its metrics in
# /tmp/m-TAG.json, printed with the hash of its output's start (the same text on every path) and how
# its decode step ran (one CUDA graph, or op by op and why).
run_exec() {
  local tag=$1 plan=$2; shift 2
  env "$@" timeout 100 ${EXEC:-$B/djinn-exec} $plan --weights /tmp/llama2-13b --backend cuda --enforce-budget \
    --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-$tag.json $EXTRA > /tmp/exec-$tag.txt 2>&1 || tail -5 /tmp/exec-$tag.txt
  python3 - "$tag" /tmp/m-$tag.json /tmp/exec-$tag.txt <<'PY'
import json, sys, hashlib
t, p, out = sys.argv[1:]
try:
    m = json.load(open(p))
except Exception as e:
    print(t, "no metrics:", e); sys.exit()
h = hashlib.md5(open(out, 'rb').read()[:300]).hexdigest()[:8]
g = (m.get("device") or {}).get("decode_graph", "")
print(t, h, json.dumps({k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and any(s in k for s in ("ttft", "decode_ms", "decode_device", "prefill_device"))}, sort_keys=True), g)
PY
}

# gpu_tests: every GPU test (cuda:: and profile::) on one thread, its lines and any failure's
# output in $OUT/gpu-tests.txt.
gpu_tests() {
  echo "== GPU tests"; date
  timeout 200 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
  grep -E "^test |test result" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
  grep -B2 -A30 "panicked" /tmp/gpu-tests.txt | head -150 >> $OUT/gpu-tests.txt
}

# profile_lease P: djinn-profile of this machine as it is now (llama2-13b's blocks, 512-token
# prompt) to P, its log in $OUT/profile-log.txt.
profile_lease() {
  echo "== djinn-profile"; date
  timeout 240 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $1 > $OUT/profile-log.txt 2>&1 || tail -5 $OUT/profile-log.txt
  grep -E "host|CPU|pinned|decode layer|prefill layer" $OUT/profile-log.txt | head -10
}
