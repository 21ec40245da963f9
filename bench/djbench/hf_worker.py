#!/usr/bin/env python3
"""One transformers system, in its own process: cap the device, load, time, report.

Run by the harness as a subprocess per system, so that one system's device
memory, allocator state and CUDA context cannot leak into the next:

    python3 hf_worker.py --model-dir DIR --mode offload --cap-bytes N --prompt-ids ids.json \
        --new-tokens 50 --out result.json

The cap is enforced twice, as the benchmark promises every system the same
whole-process device memory: a ballast tensor takes all free memory but `cap`
bytes before anything else is allocated, and the caching allocator is limited
to ballast + cap with `torch.cuda.set_per_process_memory_fraction`.

Modes: `offload` is transformers + accelerate with `device_map="auto"` and
`max_memory={0: cap - headroom, "cpu": ...}` (layers that do not fit run from
CPU memory, copied in by accelerate's hooks at each forward); `gpu` loads the
whole model on the device (`device_map="cuda"`), which a cap smaller than the
model must refuse with an out-of-memory error, reported as status `oom`.

Timing: TTFT is the prefill of the prompt plus the first token's argmax, CUDA-
synchronised; then one forward per new token with the KV cache
(`past_key_values`), each step timed on its own. Greedy decoding, batch 1.
Without CUDA (a CPU dry run) the ballast and synchronisation are skipped.

The result JSON is rewritten at every phase, so a process killed by the
harness's timeout still says how far it got.
"""
import argparse
import json
import os
import sys
import time
import traceback


def write(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)


def is_oom(e):
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def apply_cap(torch, cap_bytes, result):
    """Leaves exactly `cap_bytes` of device memory to this process's allocations."""
    free, total = torch.cuda.mem_get_info()
    ballast_bytes = max(0, free - cap_bytes)
    result.update(device_total_bytes=total, device_free_before_bytes=free, ballast_bytes=ballast_bytes)
    ballast = torch.empty(ballast_bytes, dtype=torch.uint8, device="cuda") if ballast_bytes else None
    reserved = torch.cuda.memory_reserved()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (reserved + cap_bytes) / total))
    if free < cap_bytes:
        result["notes"].append(f"only {free} bytes free, less than the cap {cap_bytes}: no ballast")
    torch.cuda.reset_peak_memory_stats()
    result["ballast_reserved_bytes"] = reserved
    result["ballast_allocated_bytes"] = torch.cuda.memory_allocated()
    return ballast


def load(args, torch, cuda, result):
    import transformers
    from transformers import AutoModelForCausalLM

    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    kwargs = {dtype_kw: {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]}
    if args.mode == "gpu":
        kwargs["device_map"] = "cuda" if cuda else "cpu"
    else:
        max_memory = {"cpu": args.cpu_memory}
        if cuda:
            max_memory[0] = max(0, args.cap_bytes - args.headroom_bytes)
        kwargs.update(device_map="auto", max_memory=max_memory)
    result["load_kwargs"] = {k: str(v) for k, v in kwargs.items()}
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, **kwargs).eval()
    result["load_s"] = time.perf_counter() - t0
    placement = {}
    for dev in getattr(model, "hf_device_map", {}).values():
        placement[str(dev)] = placement.get(str(dev), 0) + 1
    result["device_map_modules"] = placement
    return model


def forward(model, ids, past, logits_to_keep):
    kwargs = dict(input_ids=ids, past_key_values=past, use_cache=True)
    if logits_to_keep:
        kwargs["logits_to_keep"] = 1
    return model(**kwargs)


def greedy(model, torch, sync, device, prompt, new_tokens, logits_to_keep):
    """Returns (ttft_ms, [decode step ms], generated ids)."""
    ids = torch.tensor([prompt], device=device)
    sync()
    t0 = time.perf_counter()
    out = forward(model, ids, None, logits_to_keep)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    sync()
    ttft = (time.perf_counter() - t0) * 1e3
    tokens, steps, past = [int(nxt)], [], out.past_key_values
    for _ in range(new_tokens - 1):
        t = time.perf_counter()
        out = forward(model, nxt.to(device), past, logits_to_keep)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        steps.append((time.perf_counter() - t) * 1e3)
        past = out.past_key_values
        tokens.append(int(nxt))
    return ttft, steps, tokens


def run(args, result):
    import torch
    import transformers

    cuda = torch.cuda.is_available() and not args.cpu
    result.update(torch=torch.__version__, transformers=transformers.__version__, cuda=cuda)
    if cuda:
        result["gpu_name"] = torch.cuda.get_device_name(0)
        result["phase"] = "cap"
        ballast = apply_cap(torch, args.cap_bytes, result)  # noqa: F841 (held for the whole run)
    else:
        result["notes"].append("no CUDA: CPU dry run, no cap, no synchronisation")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    device = "cuda:0" if cuda else "cpu"
    with open(args.prompt_ids) as f:
        prompt = json.load(f)

    result["phase"] = "load"
    write(args.out, result)
    model = load(args, torch, cuda, result)

    # `logits_to_keep` (transformers >= 4.50) keeps prefill from computing logits for every prompt position.
    logits_to_keep = True
    with torch.inference_mode():
        if args.warmup:
            result["phase"] = "warmup"
            write(args.out, result)
            try:
                greedy(model, torch, sync, device, prompt[:16], 3, logits_to_keep)
            except TypeError:
                logits_to_keep = False
                greedy(model, torch, sync, device, prompt[:16], 3, logits_to_keep)
        result["phase"] = "generate"
        write(args.out, result)
        ttft, steps, tokens = greedy(model, torch, sync, device, prompt, args.new_tokens, logits_to_keep)
    result.update(ttft_ms=ttft, decode_step_ms=steps, tokens=tokens, prompt_len=len(prompt))
    if cuda:
        result["peak_allocated_bytes"] = torch.cuda.max_memory_allocated() - result["ballast_allocated_bytes"]
        result["peak_reserved_bytes"] = torch.cuda.max_memory_reserved() - result["ballast_reserved_bytes"]
        result["peak_device_bytes"] = result["peak_reserved_bytes"]
        result["peak_method"] = "torch.cuda.max_memory_reserved() - ballast (CUDA context not included)"
    result["status"] = "ok"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--mode", choices=["offload", "gpu"], required=True)
    p.add_argument("--cap-bytes", type=int, required=True)
    p.add_argument("--headroom-bytes", type=int, default=2 * 2**30)
    p.add_argument("--cpu-memory", default="200GiB")
    p.add_argument("--prompt-ids", required=True)
    p.add_argument("--new-tokens", type=int, default=50)
    # f32 is for the CPU test against the fixtures' float32 reference.
    p.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if CUDA is present (dry run)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    result = {"status": "failed", "mode": args.mode, "cap_bytes": args.cap_bytes, "phase": "start", "notes": []}
    try:
        run(args, result)
    except Exception as e:  # every failure becomes a reason in the result, never a lost row
        oom = False
        try:
            oom = is_oom(e)
        except ImportError:
            pass
        result["status"] = "oom" if oom else "failed"
        result["reason"] = f"{type(e).__name__} during {result.get('phase')}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        result["traceback"] = traceback.format_exc()[-4000:]
        print(result["traceback"], file=sys.stderr)
    write(args.out, result)
    print(json.dumps({k: result.get(k) for k in ("status", "reason", "ttft_ms", "peak_device_bytes")}))
    return 0 if result["status"] == "ok" else (3 if result["status"] == "oom" else 1)


if __name__ == "__main__":
    sys.exit(main())
