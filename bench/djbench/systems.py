"""Each benchmarked system as a function from the run's context to one `Row`.

A system function never raises for a failure of the system: a compile that
refuses the budget, an out-of-memory, a timeout, a crash or a missing result
file all end as a row with a status and a reason taken from the log.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from . import djinn
from .results import FAILED, OK, OOM, SKIPPED, TIMEOUT, Row
from .runner import Outcome, last_line

HERE = os.path.dirname(os.path.abspath(__file__))
DRY_RUN = "dry-run"


@dataclass
class Context:
    bin_dir: str
    model_dir: str
    out_dir: str
    cap_bytes: int
    prompt_len: int
    new_tokens: int
    max_seq_len: int
    gpu: str
    dtype: str
    runner: object
    prompt_paths: dict
    python: str = sys.executable
    timeout_s: float = 1800.0
    hf_headroom_bytes: int = 2 * 2**30
    warmup: bool = True
    # `cuda`, or `cpu` for a smoke run of the harness on a machine without a GPU (no caps).
    backend: str = "cuda"
    extra_notes: list = field(default_factory=list)

    def path(self, *parts) -> str:
        return os.path.join(self.out_dir, *parts)

    def log(self, name: str) -> str:
        os.makedirs(self.path("logs"), exist_ok=True)
        return self.path("logs", f"{name}.log")


def failure(row: Row, outcome: Outcome, what: str) -> Row:
    """Fills in a row's status and reason from a command that did not succeed."""
    if outcome.dry_run:
        row.status, row.reason = DRY_RUN, ""
    elif outcome.timed_out:
        row.status, row.reason = TIMEOUT, f"{what} killed after {outcome.wall_s:.0f} s"
    else:
        tail = outcome.tail
        row.status = OOM if "out of memory" in tail.lower() else FAILED
        row.reason = f"{what} exited {outcome.rc}: {last_line(tail)}"
    return row


def run_djinn(ctx: Context, strategy: str, budget_bytes: int, name: Optional[str] = None) -> Row:
    """Compiles a plan for `strategy` at `budget_bytes` and runs it with djinn-exec under the same cap."""
    name = name or strategy
    row = Row(system=name, kind="djinn", cap_bytes=budget_bytes, new_tokens=ctx.new_tokens)
    tag = name.replace("@", "-at-")
    plan = ctx.path("plans", f"{tag}.toml")
    metrics = ctx.path("metrics", f"{tag}.json")
    os.makedirs(os.path.dirname(plan), exist_ok=True)
    os.makedirs(os.path.dirname(metrics), exist_ok=True)
    row.log = ctx.log(tag)

    cmd = djinn.compile_cmd(ctx.bin_dir, ctx.gpu, budget_bytes, ctx.model_dir, ctx.prompt_len, ctx.max_seq_len, strategy, plan)
    row.commands.append(cmd)
    outcome = ctx.runner.run(cmd, ctx.timeout_s, row.log)
    if outcome.rc != 0 or outcome.timed_out or outcome.dry_run:
        failure(row, outcome, "djinn-compile")
        if outcome.dry_run:
            row.commands.append(djinn.exec_cmd(ctx.bin_dir, plan, ctx.model_dir, ctx.prompt_paths["txt"], ctx.new_tokens, metrics, ctx.backend))
            ctx.runner.run(row.commands[-1], ctx.timeout_s, row.log)
        return row
    try:
        row.predicted = djinn.plan_prediction(plan)
    except (OSError, ValueError) as e:
        row.status, row.reason = FAILED, f"cannot read the prediction of {plan}: {e}"
        return row

    cmd = djinn.exec_cmd(ctx.bin_dir, plan, ctx.model_dir, ctx.prompt_paths["txt"], ctx.new_tokens, metrics, ctx.backend)
    row.commands.append(cmd)
    outcome = ctx.runner.run(cmd, ctx.timeout_s, row.log)
    if outcome.rc != 0 or outcome.timed_out:
        return failure(row, outcome, "djinn-exec")
    try:
        m = djinn.exec_metrics(metrics)
    except (OSError, ValueError) as e:
        row.status, row.reason = FAILED, f"djinn-exec exited 0 but its metrics {metrics} are unreadable: {e}"
        return row
    row.ttft_ms = m.get("ttft_ms")
    row.decode_step_ms = list(m.get("decode_step_ms") or [])
    row.decode_ms_per_token_reported = m.get("decode_ms_per_token")
    row.peak_device_bytes = m.get("peak_device_bytes")
    row.peak_method = m.get("peak_method", "djinn-exec --json")
    row.extra["exec_metrics"] = m["raw"]
    if row.ttft_ms is None or row.decode_ms_per_token is None:
        row.status, row.reason = FAILED, f"djinn-exec metrics {metrics} lack ttft_ms or decode timings: keys {sorted(m['raw'])}"
        return row
    steps = len(row.decode_step_ms)
    if steps and steps != ctx.new_tokens - 1:
        # A run that stopped early (an end-of-sequence token) timed fewer tokens than the others.
        row.extra["note"] = f"only {steps + 1} of {ctx.new_tokens} tokens generated"
    row.status = OK
    return row


def run_hf(ctx: Context, mode: str) -> Row:
    """transformers in its own process: `offload` (accelerate, device_map=auto) or `gpu` (device_map=cuda)."""
    name = {"offload": "hf-offload", "gpu": "hf-gpu"}[mode]
    row = Row(system=name, kind="hf", cap_bytes=ctx.cap_bytes, new_tokens=ctx.new_tokens)
    row.log = ctx.log(name)
    result_path = ctx.path("metrics", f"{name}.json")
    os.makedirs(os.path.dirname(result_path), exist_ok=True)
    if os.path.exists(result_path):
        os.remove(result_path)
    cmd = [
        ctx.python, os.path.join(HERE, "hf_worker.py"),
        "--model-dir", ctx.model_dir,
        "--mode", mode,
        "--cap-bytes", str(ctx.cap_bytes),
        "--headroom-bytes", str(ctx.hf_headroom_bytes),
        "--prompt-ids", ctx.prompt_paths["json"],
        "--new-tokens", str(ctx.new_tokens),
        "--dtype", ctx.dtype,
        "--out", result_path,
    ]  # fmt: skip
    if not ctx.warmup:
        cmd.append("--no-warmup")
    if ctx.backend == "cpu":
        cmd.append("--cpu")
    row.commands.append(cmd)
    outcome = ctx.runner.run(cmd, ctx.timeout_s, row.log)
    if outcome.dry_run:
        return failure(row, outcome, name)
    result = None
    if os.path.exists(result_path):
        try:
            with open(result_path) as f:
                result = json.load(f)
        except ValueError:
            result = None
    if result is None:
        return failure(row, outcome, f"{name} worker")
    row.extra = {k: result[k] for k in ("device_map_modules", "ballast_bytes", "load_kwargs", "notes", "tokens") if k in result}
    row.load_s = result.get("load_s")
    row.peak_device_bytes = result.get("peak_device_bytes")
    row.peak_method = result.get("peak_method", "")
    if outcome.timed_out:
        row.status, row.reason = TIMEOUT, f"killed after {outcome.wall_s:.0f} s during {result.get('phase')}"
        return row
    row.status = result.get("status", FAILED)
    row.reason = result.get("reason", "" if row.status == OK else f"worker exited {outcome.rc}: {last_line(outcome.tail)}")
    if row.status == OK:
        row.ttft_ms = result.get("ttft_ms")
        row.decode_step_ms = list(result.get("decode_step_ms") or [])
        if result.get("device_map_modules"):
            row.extra["note"] = "modules per device: " + ", ".join(f"{k}: {v}" for k, v in sorted(result["device_map_modules"].items()))
    return row


def measure_h2d(ctx: Context) -> dict:
    """Pinned H2D bandwidth, measured in its own process; {'status', 'h2d_gbps', 'gpu_name', ...}."""
    path = ctx.path("metrics", "h2d.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cmd = [ctx.python, os.path.join(HERE, "h2d_worker.py"), "--out", path]
    outcome = ctx.runner.run(cmd, 600, ctx.log("h2d"))
    if outcome.dry_run:
        return {"status": DRY_RUN}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"status": FAILED, "reason": f"h2d worker exited {outcome.rc}: {last_line(outcome.tail)}"}


def copy_floor_row(djinn_row: Optional[Row], h2d: dict) -> Row:
    """The copy floor at the cap: the djinn plan's bytes streamed per token over the measured H2D rate."""
    from .results import copy_floor_ms

    row = Row(system="copy-floor", kind="floor")
    gbps = h2d.get("h2d_gbps")
    streamed = djinn_row.predicted.get("streamed_bytes_per_token") if djinn_row else None
    if djinn_row is not None:
        row.cap_bytes = djinn_row.cap_bytes
    floor = copy_floor_ms(streamed, gbps)
    if floor is None:
        row.status = SKIPPED
        row.reason = "needs the djinn plan's streamed_bytes_per_token and the measured H2D bandwidth"
        if not gbps and h2d.get("reason"):
            row.reason += f" (H2D: {h2d['reason']})"
        return row
    row.status = OK
    row.decode_ms_per_token_reported = floor
    row.extra["note"] = f"{streamed / 2**30:.2f} GiB streamed per token at {gbps:.1f} GB/s pinned H2D"
    row.extra["streamed_bytes_per_token"] = streamed
    row.extra["h2d_gbps"] = gbps
    return row
