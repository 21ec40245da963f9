#!/bin/bash
# The closing call of the 2026-12-03 afternoon session: the host and the link are measured in the
# same call as the runs they price (machines differ between leases: the committed profile, measured
# in another lease, priced the host lane of the lease at 07:44 11% slow). GPU tests; djinn-profile of this lease
# (-o $OUT/h200-measured.toml, committed as profiles/h200-measured.toml); a 4096-token prompt at
# 22 GiB; then bench/run.py's main table at 22 GiB and the sweep, every plan compiled from that
# profile; last, examples/cuda_ops' prefill rows with its constant weights and with random ones.
# Binaries in $BIN (or .device/bin.tgz).
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt; ids 4096 1 > /tmp/ids4096.txt
gpu_tests
P=$OUT/h200-measured.toml
profile_lease $P
C="$B/djinn-compile --gpu $P --model /tmp/llama2-13b"
$C --budget 22GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-22.toml 2> $OUT/summary-22GiB.txt
$C --budget 22GiB --prompt-len 4096 --max-seq-len 4096 -o /tmp/plan-4096.toml 2> $OUT/summary-22GiB-4096.txt
grep -hE "^host CPU|^predicted|^streamed:" $OUT/summary-22GiB.txt $OUT/summary-22GiB-4096.txt
echo "== a 4096-token prompt at 22 GiB"; date
timeout 120 $B/djinn-exec /tmp/plan-4096.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
  --prompt-ids /tmp/ids4096.txt --max-new-tokens 1 --json $OUT/m-p4096.json > /tmp/exec-p4096.txt 2>&1 || tail -5 /tmp/exec-p4096.txt
tail -6 /tmp/exec-p4096.txt
echo "== bench"; date
python3 bench/run.py --bin "$B" --model-dir /tmp/llama2-13b --cap 22GiB --prompt-len 512 --new-tokens 50 --max-seq-len 562 \
  --out /tmp/bench --gpu $P --sweep --deadline ${DEADLINE:-370} 2>&1 | tail -30
echo "== cuda_ops prefill: constant weights and zero activations against random ones"; date
$B/cuda_ops --reps 30 > $OUT/cuda-ops.txt 2>&1; $B/cuda_ops --reps 30 --random 1 > $OUT/cuda-ops-random.txt 2>&1
grep -h -A11 -- "-- prefill (" $OUT/cuda-ops.txt $OUT/cuda-ops-random.txt
cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/budget.svg $OUT/ 2>/dev/null
(cd $OUT && tar czf extras.tgz cuda-ops.txt cuda-ops-random.txt gpu-tests.txt profile-log.txt summary-22GiB.txt summary-22GiB-4096.txt m-p4096.json && rm cuda-ops*.txt gpu-tests.txt profile-log.txt summary-22GiB*.txt m-p4096.json)
date
