#!/bin/bash
# Issue 11, 2026-12-06, call 1 (ran on an H100 80GB HBM3 lease, the only kind that came; binaries
# of commit 2c739d1, which added the prefetch, reverted in the next commit as measured slower):
# every GPU test (the decode graph after review commit 291816f, decode attention with a
# prefetch), examples/cuda_ops' decode layer with 0..52 MiB of o_proj brought into
# L2 during decode attention, then Llama-2-13B fully resident with the default (ATTN_PREFETCH_KB of
# attn_decode.cu), none and other limits, alternating; plans from profiles/h200-measured.toml on an
# H200, else from a profile of the lease (PROFILE).
# Binaries in $BIN; what it writes in $OUT/all.tgz.
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b > /tmp/synth.txt 2>&1 &
synth=$!
gpu_tests
echo "== cuda_ops"; date
timeout 150 $B/cuda_ops --reps 30 --random 1 --prefill 0 --prefetch-sweep 1 > $OUT/cuda-ops.txt 2>&1; grep -E "d2d|copy of|back to back" $OUT/cuda-ops.txt
wait $synth; tail -1 /tmp/synth.txt
PROFILE=profiles/h200-measured.toml
nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 || { PROFILE=/tmp/lease.toml; profile_lease $PROFILE; cp $PROFILE $OUT/; }
ids 512 0 > /tmp/ids.txt
$B/djinn-compile --gpu $PROFILE --budget 30GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 562 -o /tmp/plan-30GiB.toml 2>&1 | grep -E "predicted" | head -1
echo "== runs"; date
for rep in 1 2; do
  run_exec pf-default-$rep /tmp/plan-30GiB.toml X=1
  run_exec pf0-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DATTN_PREFETCH_KB=0
  run_exec pf16-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DATTN_PREFETCH_KB=16384
  run_exec pf48-$rep /tmp/plan-30GiB.toml DJINN_NVRTC_DEFINES=-DATTN_PREFETCH_KB=49152
done
mkdir -p /tmp/o; cp /tmp/m-*.json /tmp/o/; cp $OUT/gpu-tests.txt /tmp/o/; tar czf $OUT/all.tgz -C /tmp o
date
