#!/bin/bash
# Issue 11, why gemv_bulk ran slower than gemv (bulk-check.sh): examples/cuda_ops with random
# operands and cuBLASLt's candidates for each prefill product (--lt 12), then the decode shape
# alone under gemv_bulk's sizing overrides (one block a multiprocessor, smaller pieces, no proxy
# fence, 8 warps a block, less in flight), each printing the driver's occupancy for its launches;
# last the GEMV tests. Binaries in $BIN.
. bench/gpu/lib.sh
echo "== cuda_ops"; date
timeout 150 $B/cuda_ops --random 1 --reps 30 --lt 12 > $OUT/cuda-ops.txt 2>&1; cat $OUT/cuda-ops.txt
for d in "-DBULK_BLOCKS_PER_SM=1" "-DBULK_BLOCKS_PER_SM=1 -DBULK_SM_BYTES=212992" "-DBULK_PIECE_MAX=2048" \
         "-DBULK_FENCE=0" "-DBULK_WARPS=8" "-DBULK_SM_BYTES=65536" "-DBULK_BLOCKS_PER_SM=3 -DBULK_SM_BYTES=196608"; do
  echo "-- DJINN_NVRTC_DEFINES='$d'"
  DJINN_NVRTC_DEFINES="$d" timeout 60 $B/cuda_ops --random 1 --reps 30 --prefill 0 2>&1 \
    | sed -n '/^gemv_bulk launches/,/^$/p; /gemv_bulk (copy engine)/,/one layer, back to back$/p' | tee -a $OUT/bulk-tune.txt
done
echo "== GEMV tests"; date
timeout 120 $B/djinn-test cuda::kernels::gemv --test-threads=1 > /tmp/gemv-tests.txt 2>&1
grep -E "test result|panicked|FAILED" /tmp/gemv-tests.txt | head; grep -A12 panicked /tmp/gemv-tests.txt | head -40
cp /tmp/gemv-tests.txt $OUT/gemv-tests.txt
date
