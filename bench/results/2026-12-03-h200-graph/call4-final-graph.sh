#!/bin/bash
# The closing call of the 2026-12-03 evening session (issue 11), one call of at most ~560 s:
# the profile tests (djinn-profile stages the pass header since the graph change); djinn-profile of
# this lease (committed as profiles/h200-measured.toml); Llama-2-13B fully resident with the decode
# graph and op by op (DJINN_GRAPH=0), alternating; bench/run.py's main rows (djinn, sync,
# accelerate offload) at 22 GiB and the resident budgets 26 and 30 GiB, every plan from this
# lease's profile; examples/cuda_ops with random operands; last, traced runs at 22 GiB and fully
# resident broken down by block (bench/gpu/trace_breakdown.py). Binaries in $BIN.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
echo "== profile tests"; date
timeout 90 $B/djinn-test profile:: --test-threads=1 > /tmp/t.txt 2>&1
grep -E "^test |test result|panicked" /tmp/t.txt | head; cp /tmp/t.txt $OUT/profile-tests.txt
wait $synth; tail -1 /tmp/synth.txt
P=$OUT/h200-measured.toml
profile_lease $P
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu $P --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-$b.toml 2> /tmp/summary-$b.txt
  grep -hE "^predicted|^host CPU|^streamed:" /tmp/summary-$b.txt | head -3
done
echo "== graph or op by op"; date
for rep in 1 2; do
  run_exec res-graph-$rep /tmp/plan-30GiB.toml X=1
  run_exec res-direct-$rep /tmp/plan-30GiB.toml DJINN_GRAPH=0
done
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
  --out /tmp/bench --gpu $P --only djinn,sync,hf-offload,sweep --sweep --sweep-budgets 26,30 --deadline ${DEADLINE:-250} 2>&1 | tail -22
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
echo "== cuda_ops"; date
timeout 60 $B/cuda_ops --reps 30 --random 1 > $OUT/cuda-ops-random.txt 2>&1
grep -E "^device|^qkv|^o_proj|^gate_up|^down|^lm_head|^rmsnorm|^one layer|^-- " $OUT/cuda-ops-random.txt | head -40
echo "== traces"; date
for b in 22GiB 30GiB; do
  [ $SECONDS -gt ${STOP_AT:-530} ] && { echo "stopped: $SECONDS s"; break; }
  EXTRA="--trace /tmp/trace-$b.json" run_exec trace-$b /tmp/plan-$b.toml X=1
  python3 bench/gpu/trace_breakdown.py /tmp/trace-$b.json /tmp/plan-$b.toml > $OUT/trace-breakdown-$b.txt 2>&1
  grep -E "^layer\.(0|1|20|39)(\.| )|^decode pass|passes" $OUT/trace-breakdown-$b.txt | head -12
done
cp /tmp/summary-*.txt $OUT/ 2>/dev/null; tar czf $OUT/metrics.tgz /tmp/m-*.json 2>/dev/null
date
