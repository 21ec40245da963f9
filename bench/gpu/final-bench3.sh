#!/bin/bash
# Closing GPU calls of the 2026-12-03 session, in two parts (one call each; a call may run 10 minutes).
# PART=1: every GPU test, examples/cuda_ops, djinn-profile re-measured with the final code
#   (-> $OUT/h200-measured.toml, committed as profiles/h200-measured.toml), resident decode greedy and
#   sampled, then bench/run.py's main table at the 22 GiB cap (KV for 512 + 50 positions).
# PART=2: the budget sweep (9-30 GiB) from the profile committed after part 1, merged with part 1's
#   results.json (copied into bench/results/.../part1.json before the call).
# Binaries in $BIN.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
if [ "${PART:-1}" = 1 ]; then
  echo "== GPU tests"; date
  timeout 200 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
  grep -E "^test |test result" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
  grep -B2 -A30 "panicked" /tmp/gpu-tests.txt | head -150 >> $OUT/gpu-tests.txt
  echo "== cuda_ops"; date
  timeout 100 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; sed -n '/-- decode (1 tokens at position 512), fused/,/one layer, back to back, no PDL/p' $OUT/cuda-ops.txt
  echo "== profile"; date
  timeout 150 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $OUT/h200-measured.toml 2>&1 | tail -4
  P=$OUT/h200-measured.toml; [ -s $P ] || P=profiles/h200-measured.toml
  $B/djinn-compile --gpu $P --budget 30GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-res.toml 2>&1 | grep predicted
  echo "== greedy and sampled, resident"; date
  for s in greedy "--temperature 0.8 --top-p 0.9 --seed 7" greedy "--temperature 0.8 --top-p 0.9 --seed 7"; do
    a=$s; [ "$s" = greedy ] && a="--temperature 0"
    timeout 60 $B/djinn-exec /tmp/plan-res.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt \
      --max-new-tokens 50 --ignore-eos $a --json /tmp/m.json > /tmp/exec.txt 2>&1 || tail -3 /tmp/exec.txt
    python3 -c "import json; m=json.load(open('/tmp/m.json')); print('$s', {k: round(v,3) for k,v in m.items() if k in ('ttft_ms','decode_ms_per_token','predicted_ttft_ms','predicted_decode_ms_per_token')})"
  done
  echo "== bench"; date
  python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
    --out /tmp/bench --gpu $P --deadline ${DEADLINE:-330} 2>&1 | tail -20
else
  echo "== sweep"; date
  python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
    --out /tmp/bench --only sweep --merge-from ${MERGE:?part 1 results.json} --gpu profiles/h200-measured.toml \
    --deadline ${DEADLINE:-480} 2>&1 | tail -30
fi
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
