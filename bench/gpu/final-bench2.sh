#!/bin/bash
# This session's closing GPU call: every GPU test (the sampling kernel against its twin, the fine
# MLP split across the bus and the held LM head on the CUDA backend among them), examples/cuda_ops,
# djinn-profile re-measured with the final code (-> $OUT/h200-measured.toml, committed as
# profiles/h200-measured.toml), resident decode greedy against sampled on the device
# (temperature 0.8, top-p 0.9), then bench/run.py side by side at the 22 GiB cap (KV for 512 + 50
# positions) and the budget sweep, predicted from the re-measured profile. Binaries in $BIN.
. bench/gpu/lib.sh
echo "== GPU tests"; date
timeout 200 $B/djinn-test cuda:: profile:: --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |test result" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
grep -B2 -A30 "panicked" /tmp/gpu-tests.txt | head -150 >> $OUT/gpu-tests.txt
grep -iE "sampl" /tmp/gpu-tests.txt | head -20
echo "== cuda_ops"; date
timeout 100 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; sed -n '/-- decode (1 tokens at position 512), fused/,/one layer, back to back, no PDL/p' $OUT/cuda-ops.txt; grep -iE -A6 "argmax|sampl" $OUT/cuda-ops.txt | head -12
echo "== profile"; date
timeout 150 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-measured -o $OUT/h200-measured.toml 2>&1 | tail -4
P=$OUT/h200-measured.toml; [ -s $P ] || P=profiles/h200-measured.toml
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
$B/djinn-compile --gpu $P --budget 30GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-res.toml 2>&1 | grep predicted
echo "== greedy and sampled, resident"; date
for s in greedy "--temperature 0.8 --top-p 0.9 --seed 7" greedy "--temperature 0.8 --top-p 0.9 --seed 7"; do
  a=$s; [ "$s" = greedy ] && a="--temperature 0"
  timeout 60 $B/djinn-exec /tmp/plan-res.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt \
    --max-new-tokens 50 --ignore-eos $a --json /tmp/m.json > /tmp/exec.txt 2>&1 || tail -3 /tmp/exec.txt
  python3 -c "import json; m=json.load(open('/tmp/m.json')); print('$s', {k: round(v,3) for k,v in m.items() if k in ('ttft_ms','decode_ms_per_token')})"
done
[ -n "$SKIP_BENCH" ] && { date; exit 0; }
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
  --out /tmp/bench --sweep --gpu $P --deadline ${DEADLINE:-280} 2>&1 | tail -30
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
date
