#!/bin/bash
# Which profile's plans run faster, in one call (2026-12-02 21:08 UTC, bench/results/2026-12-02-h200-final2/
# profile-ab.txt): the 22 GiB and 9 GiB plans compiled from the committed profile before this session's
# re-measurement (old-*) and from the re-measured one (new-*), alternating, same binaries (carried with the
# plans in .device/bin/plans). Run from the repository root with .device/bin.tgz carried.
set -o pipefail
B=.device/bin; tar xzf .device/bin.tgz -C .device
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels
date
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
for rep in 1 2; do for p in old-22GiB new-22GiB; do
  timeout 60 $B/djinn-exec $B/plans/$p.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --json /tmp/m.json > /tmp/e.txt 2>&1 || tail -3 /tmp/e.txt
  python3 -c "import json; m=json.load(open('/tmp/m.json')); print('$p $rep', {k: round(v,3) for k,v in m.items() if k in ('ttft_ms','decode_ms_per_token','predicted_decode_ms_per_token')})"
done; done
for p in old-9GiB new-9GiB; do
  timeout 60 $B/djinn-exec $B/plans/$p.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 30 --ignore-eos --json /tmp/m.json > /tmp/e.txt 2>&1 || tail -3 /tmp/e.txt
  python3 -c "import json; m=json.load(open('/tmp/m.json')); print('$p', {k: round(v,3) for k,v in m.items() if k in ('ttft_ms','decode_ms_per_token','predicted_decode_ms_per_token')})"
done
date
