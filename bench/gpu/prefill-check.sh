#!/bin/bash
# Issues 11/12's prefill check, in one call. Run from the repository root on the GPU machine, with the
# release binaries (and the stripped integration-test binary as djinn-test, examples/cuda_ops as
# cuda_ops) in $BIN (default .device/bin); results go to $OUT.
# 1. The flash prefill kernel against its CPU twin (attn_prefill_{f16,bf16}: 13B and 8B shapes at
#    t = 512, odd t, pos0 > 0, GQA, windows), attention through Ops with no scratch, then every GPU
#    test (the fixtures' CUDA-vs-CPU and logits-vs-transformers runs now prefill through the kernel).
# 2. cuda_ops: the layer's ops, then prefill attention alone, flash against cuBLAS + softmax, at
#    t = 512 and 4096 (us, TFLOP/s, the old path's scratch, the two outputs' max difference).
# 3. Llama-2-13B TTFT at 30 GiB and 22 GiB with a 512-token prompt (26.5 ms resident before), and a
#    3584-token prompt (+ 512 new = the model's 4096 positions) at the 22 GiB cap, which did not fit
#    with the [heads, t, t] scratch (2.1 GB at 3584).
set -o pipefail
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
# The test binary finds tests/fixtures at the path it was built in.
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main; [ -e /work/wC ] || ln -s "$PWD" /work/wC
export DJINN_KERNEL_CACHE=/tmp/djinn-kernels PYTHONUNBUFFERED=1
date; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
echo "== flash prefill tests"; date
timeout 200 $B/djinn-test cuda::kernels::attn_prefill cuda::kernels::prefill_attention cuda::kernels::kv_store_and_attention \
  --nocapture --test-threads=1 > /tmp/prefill-tests.txt 2>&1
grep -E "^test |skipped|test result|panicked|mismatch|: ok, max" /tmp/prefill-tests.txt > $OUT/prefill-tests.txt; grep -E "test result|panicked|FAILED" /tmp/prefill-tests.txt | head
echo "== all GPU tests"; date
timeout 300 $B/djinn-test cuda:: profile:: --nocapture --test-threads=1 > /tmp/gpu-tests.txt 2>&1
grep -E "^test |skipped|test result|panicked|mismatch|: ok, max" /tmp/gpu-tests.txt > $OUT/gpu-tests.txt; grep -E "test result|panicked|FAILED" /tmp/gpu-tests.txt | head
echo "== cuda_ops"; date
timeout 200 $B/cuda_ops > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
echo "== 13B TTFT"; date
for len in 512 3584; do
  python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range($len-1)]))" > /tmp/ids-$len.txt
done
for run in "30GiB 512" "22GiB 512" "22GiB 3584"; do
  set -- $run; budget=$1; len=$2
  $B/djinn-compile --gpu profiles/h200-measured.toml --budget $budget --model /tmp/llama2-13b --prompt-len $len \
    --max-seq-len $((len + 512)) -o /tmp/plan-$budget-$len.toml 2>&1 | grep -E "activations|predicted" | head -3
  timeout 150 $B/djinn-exec /tmp/plan-$budget-$len.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget \
    --prompt-ids /tmp/ids-$len.txt --max-new-tokens 20 --ignore-eos --json $OUT/m-$budget-$len.json > /tmp/exec-$budget-$len.txt 2>&1 \
    || tail -5 /tmp/exec-$budget-$len.txt
  python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('$budget', '$len', {k: round(v, 3) for k, v in m.items() if isinstance(v, (int, float)) and 'ttft' in k})" $OUT/m-$budget-$len.json
done
