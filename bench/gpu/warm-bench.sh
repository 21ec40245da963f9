#!/bin/bash
# The warm-slot session's GPU calls (2026-12-03), in two parts (one call each).
# PART=1: every GPU test; at the 22 GiB cap the warm-slot plan and the same plan compiled with
#   --warm-slots off, alternating, twice each (then one traced warm run, its trace kept); one
#   resident run; a 4096-token prompt and a 4046-token prompt + 50 tokens at 22 GiB (KV for 4096
#   positions); then bench/run.py's main table at 22 GiB.
# PART=2: the budget sweep (9-30 GiB), merged with part 1's results.json ($MERGE).
# PART=all: part 1 with the sweep in the same bench/run.py run (--sweep), and one traced warm run
#   whose first prefill steps are printed.
# Binaries in $BIN (or .device/bin.tgz); the profile is the committed profiles/h200-measured.toml.
. bench/gpu/lib.sh
P=profiles/h200-measured.toml
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt; ids 4096 1 > /tmp/ids4096.txt; ids 4046 2 > /tmp/ids4046.txt
# warm_of TAG: the warm copies a run's --json reports (under "device").
warm_of() { python3 -c "import json; d=json.load(open('/tmp/m-$1.json'))['device']; print('$1 warm copies', d['warm_copy_bytes'], 'bytes in', round(d['warm_copy_ms'], 2), 'ms; copy lane', round(d['copy_gbps'], 1), 'GB/s')"; }
if [ "${PART:-1}" != 2 ]; then
  echo "== GPU tests"; date
  timeout 200 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
  grep -E "^test |test result" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
  grep -B2 -A30 "panicked" /tmp/gpu-tests.txt | head -150 >> $OUT/gpu-tests.txt
  echo "== plans"; date
  C="$B/djinn-compile --gpu $P --model /tmp/llama2-13b"
  $C --budget 22GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-warm.toml 2> $OUT/summary-22GiB.txt
  $C --budget 22GiB --prompt-len 512 --max-seq-len 562 --warm-slots off -o /tmp/plan-cold.toml 2> $OUT/summary-22GiB-cold.txt
  $C --budget 30GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-res.toml 2> /dev/null
  $C --budget 22GiB --prompt-len 4096 --max-seq-len 4096 -o /tmp/plan-4096.toml 2> $OUT/summary-22GiB-4096.txt
  $C --budget 22GiB --prompt-len 4046 --max-seq-len 4096 -o /tmp/plan-4046.toml 2> $OUT/summary-22GiB-4046.txt
  grep -hE "warm slots|^predicted|instead, with --warm" $OUT/summary-*.txt
  echo "== 22 GiB: warm against --warm-slots off, alternating"; date
  for i in 1 2; do
    run_exec warm$i /tmp/plan-warm.toml; warm_of warm$i
    run_exec cold$i /tmp/plan-cold.toml; warm_of cold$i
  done
  EXTRA="--trace /tmp/trace-warm.json" run_exec traced /tmp/plan-warm.toml; warm_of traced
  python3 -c "import json; t=json.load(open('/tmp/trace-warm.json')); ev=[e for e in t['traceEvents'] if e.get('ph')=='X' and e['pid']==1 and e['tid']==2]; print('prefill first compute steps (ms):', [(e['name'], round(e['dur']/1e3, 3)) for e in ev[:4]])"
  gzip -c /tmp/trace-warm.json > $OUT/trace-22GiB-warm.json.gz
  echo "== resident"; date
  run_exec resident /tmp/plan-res.toml
  echo "== long prompts at 22 GiB"; date
  timeout 120 $B/djinn-exec /tmp/plan-4096.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
    --prompt-ids /tmp/ids4096.txt --max-new-tokens 1 --json /tmp/m-p4096.json > /tmp/exec-p4096.txt 2>&1 || tail -5 /tmp/exec-p4096.txt
  tail -12 /tmp/exec-p4096.txt
  timeout 120 $B/djinn-exec /tmp/plan-4046.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
    --prompt-ids /tmp/ids4046.txt --max-new-tokens 50 --ignore-eos --json /tmp/m-p4046.json > /tmp/exec-p4046.txt 2>&1 || tail -5 /tmp/exec-p4046.txt
  tail -12 /tmp/exec-p4046.txt
  cd /tmp && tar czf $OUT/runs.tgz m-*.json exec-*.txt && cd - > /dev/null
  echo "== bench"; date
  python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
    --out /tmp/bench --gpu $P --deadline ${DEADLINE:-300} $([ "$PART" = all ] && echo --sweep) 2>&1 | tail -32
else
  echo "== sweep"; date
  python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
    --out /tmp/bench --only sweep --merge-from ${MERGE:?part 1 results.json} --gpu $P \
    --deadline ${DEADLINE:-480} 2>&1 | tail -30
fi
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
