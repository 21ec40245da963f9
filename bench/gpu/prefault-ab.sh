#!/bin/bash
# The host lane's prefault and team copies, A/B in one call: the warm 22 GiB plan run alternately by
# the binaries before (.device/old.tgz, commit ad0aae5) and after them (.device/bin.tgz), one traced
# run of each; then the long-context plans of the cost-model fix (KV for 4096 positions): a 4046-token
# prompt + 50 tokens and a 4096-token prompt.
. bench/gpu/lib.sh
mkdir -p /tmp/old && tar xzf .device/old.tgz -C /tmp/old
P=profiles/h200-measured.toml
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt; ids 4096 1 > /tmp/ids4096.txt; ids 4046 2 > /tmp/ids4046.txt
C="$B/djinn-compile --gpu $P --model /tmp/llama2-13b"
$C --budget 22GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-warm.toml 2>&1 | grep -E "^predicted"
$C --budget 22GiB --prompt-len 4046 --max-seq-len 4096 -o /tmp/plan-4046.toml 2> $OUT/summary-4046.txt
$C --budget 22GiB --prompt-len 4096 --max-seq-len 4096 -o /tmp/plan-4096.toml 2> $OUT/summary-4096.txt
grep -hE "^predicted|host CPU" $OUT/summary-4046.txt $OUT/summary-4096.txt
echo "== 22 GiB, before (old) and after (new), alternating"; date
for i in 1 2 3; do
  B=/tmp/old/bin run_exec old$i /tmp/plan-warm.toml
  run_exec new$i /tmp/plan-warm.toml
done
B=/tmp/old/bin EXTRA="--trace /tmp/trace-old.json" run_exec old-traced /tmp/plan-warm.toml
EXTRA="--trace /tmp/trace-new.json" run_exec new-traced /tmp/plan-warm.toml
python3 - <<'PY' | tee $OUT/first-steps.txt
import json
for tag in ("old", "new"):
    t = json.load(open(f"/tmp/trace-{tag}.json"))
    ev = [e for e in t["traceEvents"] if e.get("ph") == "X" and e["pid"] == 1 and e["tid"] == 2]
    print(tag, "prefill's first compute steps (name, ms):", [(e["name"], round(e["dur"] / 1e3, 3)) for e in ev[:4]])
PY
echo "== long context at 22 GiB"; date
timeout 120 $B/djinn-exec /tmp/plan-4046.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
  --prompt-ids /tmp/ids4046.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-p4046.json > /tmp/exec-p4046.txt 2>&1 || tail -5 /tmp/exec-p4046.txt
grep -E "TTFT|decode|copy lane|peak device" /tmp/exec-p4046.txt
timeout 120 $B/djinn-exec /tmp/plan-4096.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
  --prompt-ids /tmp/ids4096.txt --max-new-tokens 1 --json /tmp/m-p4096.json > /tmp/exec-p4096.txt 2>&1 || tail -5 /tmp/exec-p4096.txt
grep -E "TTFT|peak device" /tmp/exec-p4096.txt
cd /tmp && tar czf $OUT/runs.tgz m-*.json trace-old.json trace-new.json exec-*.txt
date
