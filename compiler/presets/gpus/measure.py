"""Measures the copy figures of a GPU preset, and the host turnaround, with PyTorch.

Run on the GPU machine: `python3 compiler/presets/gpus/measure.py`. It prints
pinned host-to-device copy time and rate by size (the preset's `h2d_gbps` and,
fitted from two sizes, `copy_latency_us`), the spacing of tiny back-to-back
kernels (PyTorch's dispatch bound, an upper bound for `kernel_overhead_us`), and
the time of one decode-style host turnaround: a kernel, the logits copied to
pinned host memory, a stream sync, an argmax on the host, the token copied back
(what `djinn_compiler::cost::HOST_TURNAROUND_US` stands for).
"""
import time

import torch

d = "cuda"


def event():
    return torch.cuda.Event(enable_timing=True)


print(torch.cuda.get_device_name())
for n in [4096, 1 << 20, 64 << 20, 634408960]:
    h = torch.empty(n, dtype=torch.uint8).pin_memory()
    g = torch.empty(n, dtype=torch.uint8, device=d)
    for _ in range(3):
        g.copy_(h, non_blocking=True)
    torch.cuda.synchronize()
    reps = 200 if n < (64 << 20) else 10
    e0, e1 = event(), event()
    e0.record()
    for _ in range(reps):
        g.copy_(h, non_blocking=True)
    e1.record()
    torch.cuda.synchronize()
    us = e0.elapsed_time(e1) * 1e3 / reps
    print(f"h2d {n} B: {us:.1f} us/copy, {n / us / 1e3:.1f} GB/s")
    del h, g

x = torch.zeros(256, device=d)
for _ in range(100):
    x.add_(1)
torch.cuda.synchronize()
e0, e1 = event(), event()
e0.record()
for _ in range(5000):
    x.add_(1)
e1.record()
torch.cuda.synchronize()
print(f"tiny kernels back to back: {e0.elapsed_time(e1) * 1e3 / 5000:.2f} us each")

logits = torch.randn(32000, device=d)
host_logits = torch.empty(32000).pin_memory()
token = torch.zeros(1, dtype=torch.int64, device=d)
host_token = torch.zeros(1, dtype=torch.int64).pin_memory()


def turnaround():
    logits.add_(1.0)  # stands in for the LM head
    host_logits.copy_(logits, non_blocking=True)
    torch.cuda.current_stream().synchronize()
    host_token[0] = int(host_logits.numpy().argmax())
    token.copy_(host_token, non_blocking=True)


for _ in range(200):
    turnaround()
torch.cuda.synchronize()
for _ in range(3):
    t = time.perf_counter()
    n = 3000
    for _ in range(n):
        turnaround()
    torch.cuda.synchronize()
    print(f"turnaround (kernel + logits D2H + sync + argmax + token H2D): {(time.perf_counter() - t) * 1e6 / n:.1f} us/iter")
