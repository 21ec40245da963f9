#!/bin/bash
# One 13B decode layer on the host CPU (examples/cpu_layer): alone and during a 55 GB/s pinned H2D copy loop,
# each warm and with its worker threads idle before every op. Run from the repo root on the GPU machine.
B=${BIN:-.device/bin}
exec > >(tee -a $OUT/log.txt) 2>&1
echo "== alone, no gap"; $B/cpu_layer --reps 20 | tail -1
echo "== alone, 2 ms gap before each op"; $B/cpu_layer --reps 20 --gap-us 2000 | tail -1
python3 - <<'PY' &
import torch, time
x = torch.empty(1 << 30, dtype=torch.uint8).pin_memory(); y = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
y.copy_(x); torch.cuda.synchronize(); print("copy loop running", flush=True); open("/tmp/copying", "w").close()
s = torch.cuda.Event(enable_timing=True); e = torch.cuda.Event(enable_timing=True); t = time.time(); n = 0; s.record()
while time.time() - t < 22: y.copy_(x, non_blocking=True); n += 1; torch.cuda.synchronize()
e.record(); torch.cuda.synchronize(); print(f"copy loop: {n} GiB in {s.elapsed_time(e):.0f} ms: {n * 2**30 / s.elapsed_time(e) / 1e6:.1f} GB/s", flush=True)
PY
for i in $(seq 60); do [ -e /tmp/copying ] && break; sleep 0.5; done; sleep 1
echo "== during copies, no gap"; $B/cpu_layer --reps 20 2>&1
echo "== during copies, 2 ms gap before each op"; $B/cpu_layer --reps 20 --gap-us 2000 2>&1 | tail -1
wait
date
