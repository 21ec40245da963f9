#!/bin/bash
# Issue 11, 2026-12-07, call 1: the norms folded into the products that read them
# (rmsnorm_gemv, rmsnorm_gemv_silu), RoPE with the newest row's store folded into decode
# attention (attn_decode_rope), and attention's partials merged by its last split block of each head
# (counters in the pass header) instead of attn_combine's launch. Every GPU test; examples/cuda_ops' decode rows and one layer back to
# back, folded and with the norms and RoPE apart; djinn-profile of the lease; then Llama-2-13B fully
# resident (30 GiB) and at the 22 GiB cap, plans from that profile, run alternately by these
# binaries and by djinn-exec built from 7c8915d (the session's start, $B/djinn-exec-base), each
# plan also traced by both and broken down by block.
# Binaries in $BIN; what it writes in $OUT/all.tgz.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
echo "== cuda_ops"; date
timeout 150 $B/cuda_ops --reps 30 --random 1 --prefill 0 > $OUT/cuda-ops.txt 2>&1
grep -E "copy of|^rmsnorm|qkv|rope|attention|gate_up|back to back" $OUT/cuda-ops.txt
wait $synth; tail -1 /tmp/synth.txt
profile_lease /tmp/lease.toml; cp /tmp/lease.toml $OUT/
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu /tmp/lease.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 \
    -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
for rep in 1 2 3; do
  run_exec new-30-$rep /tmp/plan-30GiB.toml X=1
  EXEC=$B/djinn-exec-base run_exec base-30-$rep /tmp/plan-30GiB.toml X=1
done
for rep in 1 2; do
  run_exec new-22-$rep /tmp/plan-22GiB.toml X=1
  EXEC=$B/djinn-exec-base run_exec base-22-$rep /tmp/plan-22GiB.toml X=1
done
mkdir -p /tmp/o
for b in 22GiB 30GiB; do
  for who in new base; do
    e=$B/djinn-exec; [ $who = base ] && e=$B/djinn-exec-base
    EXEC=$e EXTRA="--trace /tmp/trace-$who-$b.json" run_exec trace-$who-$b /tmp/plan-$b.toml X=1
    python3 bench/gpu/trace_breakdown.py /tmp/trace-$who-$b.json /tmp/plan-$b.toml > /tmp/o/trace-breakdown-$who-$b.txt 2>&1
    tail -3 /tmp/o/trace-breakdown-$who-$b.txt
  done
done
cp /tmp/m-*.json /tmp/o/; cp $OUT/gpu-tests.txt $OUT/cuda-ops.txt /tmp/o/
tar czf $OUT/all.tgz -C /tmp o
date
