#!/bin/bash
# The held embedding's rows gathered by the team (commit 8406af2, .device/bin.tgz) or by one thread
# (the same tree with kernels::elementwise::embed serial, .device/serial.tgz: djinn-exec only), A/B in
# one call on the warm 22 GiB plan, alternating, then one traced run of each and their first prefill steps.
. bench/gpu/lib.sh
mkdir -p /tmp/serial && tar xzf .device/serial.tgz -C /tmp/serial
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
$B/djinn-compile --gpu profiles/h200-measured.toml --model /tmp/llama2-13b --budget 22GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-warm.toml 2>&1 | grep -E "^predicted"
for i in 1 2; do
  run_exec team$i /tmp/plan-warm.toml
  B=/tmp/serial/bin run_exec serial$i /tmp/plan-warm.toml
done
EXTRA="--trace /tmp/trace-team.json" run_exec team-traced /tmp/plan-warm.toml
B=/tmp/serial/bin EXTRA="--trace /tmp/trace-serial.json" run_exec serial-traced /tmp/plan-warm.toml
python3 - <<'PY' | tee $OUT/first-steps.txt
import json
for tag in ("team", "serial"):
    t = json.load(open(f"/tmp/trace-{tag}.json"))
    ev = [e for e in t["traceEvents"] if e.get("ph") == "X" and e["pid"] == 1 and e["tid"] == 2]
    print(tag, "prefill's first compute steps (name, ms):", [(e["name"], round(e["dur"] / 1e3, 3)) for e in ev[:3]])
PY
date
