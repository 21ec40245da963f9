#!/bin/bash
# Issue 11, 2026-12-07 (second session), call 2: call 1 again with rmsnorm compiled for blocks of at
# most RMS_THREADS (512; call 1's tree asked a 1024-thread block of a 72-register kernel and its GPU
# test failed to launch) — the tree as committed. "new"
# (this tree: rmsnorm's weight loaded before the launch wait, attention's combine reading a tile
# of partials at once, the residual GEMVs reading the residual before their products), "shipped"
# (ba05b43: RoPE and the newest row's store folded into decode attention, attention merging its
# own partials; $B/djinn-exec-shipped) and "base" (7c8915d, before both; $B/djinn-exec-base).
# Every GPU test of this tree; examples/cuda_ops' decode rows, of this tree and of ba05b43's
# ($B/cuda_ops-shipped); djinn-profile of the lease; then Llama-2-13B fully resident (30 GiB) and
# at the 22 GiB cap, plans from that profile, run in turn by the three, each plan also traced by
# each and broken down by block.
# Binaries in $BIN; what it writes in $OUT/all.tgz.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
echo "== cuda_ops"; date
timeout 150 $B/cuda_ops --reps 30 --random 1 --prefill 0 > $OUT/cuda-ops.txt 2>&1
timeout 150 $B/cuda_ops-shipped --reps 30 --random 1 --prefill 0 > $OUT/cuda-ops-shipped.txt 2>&1
for f in cuda-ops cuda-ops-shipped; do
  echo "-- $f"; grep -E "copy of|^rmsnorm|qkv|rope|attention|o_proj|gate_up|down|lm_head|back to back" $OUT/$f.txt | head -16
done
wait $synth; tail -1 /tmp/synth.txt
profile_lease /tmp/lease.toml; cp /tmp/lease.toml $OUT/
ids 512 0 > /tmp/ids.txt
for b in 30GiB 22GiB; do
  $B/djinn-compile --gpu /tmp/lease.toml --budget $b --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 \
    -o /tmp/plan-$b.toml 2>&1 | grep -E "predicted" | head -1
done
echo "== runs"; date
exe() { case $1 in new) echo $B/djinn-exec ;; *) echo $B/djinn-exec-$1 ;; esac; }
for rep in 1 2 3; do
  for who in new shipped base; do EXEC=$(exe $who) run_exec $who-30-$rep /tmp/plan-30GiB.toml X=1; done
done
for rep in 1 2; do
  for who in new shipped base; do EXEC=$(exe $who) run_exec $who-22-$rep /tmp/plan-22GiB.toml X=1; done
done
mkdir -p /tmp/o
for b in 22GiB 30GiB; do
  for who in new shipped base; do
    EXEC=$(exe $who) EXTRA="--trace /tmp/trace-$who-$b.json" run_exec trace-$who-$b /tmp/plan-$b.toml X=1
    python3 bench/gpu/trace_breakdown.py /tmp/trace-$who-$b.json /tmp/plan-$b.toml > /tmp/o/trace-breakdown-$who-$b.txt 2>&1
    tail -3 /tmp/o/trace-breakdown-$who-$b.txt
  done
done
cp /tmp/m-*.json /tmp/o/; cp $OUT/gpu-tests.txt $OUT/cuda-ops.txt $OUT/cuda-ops-shipped.txt /tmp/o/
tar czf $OUT/all.tgz -C /tmp o
date
