#!/usr/bin/env python3
"""Measures pinned host-to-device bandwidth, for the copy floor, in its own process.

A pinned 1 GiB host tensor is copied to the device with `non_blocking=True`
five times (after one untimed copy); each copy is timed with CUDA events and
the median is reported in GB/s (10^9 bytes per second). The copy floor of a
plan is then its bytes streamed per token divided by this rate: the decode
time no schedule can beat on this machine.

    python3 h2d_worker.py --out h2d.json [--bytes N] [--repeats 5]
"""
import argparse
import json
import statistics
import sys
import traceback


def measure(nbytes, repeats):
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: cannot measure host-to-device bandwidth")
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    host.fill_(1)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    times_ms = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dev.copy_(host, non_blocking=True)
        end.record()
        end.synchronize()
        times_ms.append(start.elapsed_time(end))
    median_ms = statistics.median(times_ms)
    return {
        "status": "ok",
        "bytes": nbytes,
        "times_ms": times_ms,
        "median_ms": median_ms,
        "h2d_gbps": nbytes / (median_ms * 1e-3) / 1e9,
        "gpu_name": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="pinned host-to-device bandwidth")
    p.add_argument("--out", required=True)
    p.add_argument("--bytes", type=int, default=2**30)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    try:
        result = measure(args.bytes, args.repeats)
    except Exception as e:
        result = {"status": "failed", "reason": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: result.get(k) for k in ("status", "h2d_gbps", "reason")}))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
