#!/usr/bin/env python3
"""Djinn against transformers + accelerate offload, side by side, in one command.

    python3 bench/run.py --bin target/release --model-dir /tmp/llama2-13b --cap 22GiB \
        --prompt-len 512 --new-tokens 50 --out OUT [--sweep] [--only djinn,hf-offload] [--dry-run]

Runs on the GPU machine (Python with torch, transformers and accelerate; the
Rust binaries built elsewhere and carried in --bin). On one synthetic
checkpoint (written by djinn-synth when --model-dir has no config.json), with
one prompt of exactly --prompt-len token ids, it runs every system in its own
process under the same whole-process device-memory cap, and writes
OUT/results.md, OUT/results.json and OUT/budget.svg after every system, so an
interrupted run keeps what it measured. See bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from djbench import djinn, prompt, report, svg, systems  # noqa: E402
from djbench.results import FAILED, SKIPPED, Row, row_from_json  # noqa: E402
from djbench.runner import DryRunner, SubprocessRunner, last_line  # noqa: E402

MAIN_SYSTEMS = ["djinn", "sync", "stream-all", "hf-offload", "hf-gpu"]
ALL_SYSTEMS = MAIN_SYSTEMS + ["sweep"]
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_bytes(s: str) -> int:
    """`22GiB`, `22 GiB`, `20000MB`, `1.5GB` or a plain byte count (as djinn-compile reads them)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", s)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"invalid byte size {s!r}: expected e.g. 22GiB, 20000MB or 1073741824")
    return round(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_budgets(s: str) -> list:
    """`9,13,17` (GiB) or `9GiB,13.5GiB` into bytes."""
    out = []
    for part in s.split(","):
        part = part.strip()
        out.append(parse_bytes(part + "GiB" if re.fullmatch(r"[0-9.]+", part) else part))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release", help="directory with djinn-synth, djinn-compile, djinn-exec")
    p.add_argument("--model-dir", required=True, help="checkpoint directory (made by djinn-synth if it has no config.json)")
    p.add_argument("--model", default="llama2-13b", help="djinn-synth preset used when the checkpoint must be made")
    p.add_argument("--dtype", choices=["auto", "f16", "bf16"], default="auto",
                   help="weights dtype for djinn-synth and transformers; auto: the checkpoint's (the preset's when made)")
    p.add_argument("--cap", type=parse_bytes, default=parse_bytes("22GiB"), help="whole-process device memory of every system")
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--new-tokens", type=int, default=50)
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="positions Djinn's KV cache holds; default: --prompt-len + --new-tokens (what djinn-compile sizes by default)")
    p.add_argument("--gpu", default="auto",
                   help="djinn-compile GPU preset or profile; auto: the preset for the device's name; measure: run "
                        "djinn-profile first and compile every plan from its profile (this machine as it is now: a shared "
                        "host's memory speed differs between leases)")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (results.md, results.json, budget.svg, logs/, plans/)")
    p.add_argument("--sweep", action="store_true", help="also run Djinn at every --sweep-budgets budget")
    p.add_argument("--sweep-budgets", type=parse_budgets, default=parse_budgets("9,13,17,22,26,30"), help="GiB, comma-separated")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per system command")
    p.add_argument("--synth-timeout", type=float, default=7200.0)
    p.add_argument("--hf-headroom", type=parse_bytes, default=parse_bytes("2GiB"),
                   help="cap minus this is accelerate's max_memory for the GPU (activations, KV cache, the layer in flight)")  # fmt: skip
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="no untimed warm-up generate for transformers")
    p.add_argument("--python", default=sys.executable, help="interpreter for the torch workers")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--cpu", action="store_true",
                   help="smoke run on the CPU, for tiny models: djinn-exec --backend cpu, transformers on the CPU, no cap")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds: start no system after this, and cut each system's timeout to the time left")
    p.add_argument("--merge-from", default=None,
                   help="a results.json of an earlier run: its rows for systems not run now are kept (split a run in parts)")
    args = p.parse_args(argv)
    if args.max_seq_len is None:
        args.max_seq_len = args.prompt_len + args.new_tokens
    if args.prompt_len + args.new_tokens > args.max_seq_len:
        p.error(f"--prompt-len + --new-tokens ({args.prompt_len + args.new_tokens}) exceeds --max-seq-len {args.max_seq_len}")
    selected = list(ALL_SYSTEMS) if args.only is None else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in selected if s not in ALL_SYSTEMS]
    if unknown:
        p.error(f"unknown system(s) in --only: {', '.join(unknown)} (expected {', '.join(ALL_SYSTEMS)})")
    if args.only is None and not args.sweep:
        selected.remove("sweep")
    if args.sweep and "sweep" not in selected:
        selected.append("sweep")
    args.selected = selected
    args.bin = os.path.abspath(args.bin)
    return args


def model_config(model_dir: str) -> dict:
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def checkpoint_dtype(config: dict) -> str:
    """`f16` or `bf16` from config.json's `dtype` (transformers 5) or `torch_dtype` (4.x); f16 if neither."""
    name = config.get("dtype") or config.get("torch_dtype") or "float16"
    return "bf16" if name == "bfloat16" else "f16"


class Harness:
    """The run: its context, its rows, and the files rewritten after each system."""

    def __init__(self, args, runner, echo=print):
        self.args, self.runner, self.echo = args, runner, echo
        self.main_rows, self.sweep_rows = [], []
        self.meta = {
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(),
            "model": args.model,
            "model_dir": os.path.abspath(args.model_dir),
            "cap_bytes": args.cap,
            "prompt_len": args.prompt_len,
            "new_tokens": args.new_tokens,
            "max_seq_len": args.max_seq_len,
            "dtype": args.dtype,
            "systems": args.selected,
            "argv": sys.argv,
            "dry_run": args.dry_run,
            "notes": [],
        }
        self.h2d = {}
        self.start = time.monotonic()
        self.merged = {"systems": [], "sweep": []}
        if args.merge_from:
            with open(args.merge_from) as f:
                old = json.load(f)
            self.merged = {k: [row_from_json(r) for r in old.get(k, [])] for k in ("systems", "sweep")}
            self.meta["merged_from"] = os.path.abspath(args.merge_from)
            if not self.h2d and old.get("meta", {}).get("h2d"):
                self.h2d = old["meta"]["h2d"]

    def rows(self, key):
        """This run's rows, then the merged run's rows for systems this run did not run."""
        mine = self.main_rows if key == "systems" else self.sweep_rows
        names = {r.system for r in mine}
        return mine + [r for r in self.merged[key] if r.system not in names]

    def time_left(self):
        if self.args.deadline is None:
            return None
        return self.args.deadline - (time.monotonic() - self.start)

    def save(self):
        main, sweep = self.rows("systems"), self.rows("sweep")
        md = report.write_results(self.args.out, self.meta, main, sweep)
        with open(os.path.join(self.args.out, "budget.svg"), "w") as f:
            f.write(svg.budget_chart(main, sweep, self.h2d.get("h2d_gbps")))
        return md

    def guarded(self, name, fn, cap, ctx=None):
        """Runs one system; a harness error becomes that system's failure, not the run's."""
        self.echo(f"== {name}")
        left = self.time_left()
        if left is not None and left < 30:
            return Row(system=name, kind="?", cap_bytes=cap, status=SKIPPED, reason="out of time (--deadline)")
        if ctx is not None:
            ctx.timeout_s = self.args.timeout if left is None else max(1.0, min(self.args.timeout, left - 10))
        try:
            row = fn()
        except Exception as e:
            row = Row(system=name, kind="?", cap_bytes=cap, status=FAILED,
                      reason=f"harness error: {type(e).__name__}: {e}")  # fmt: skip
            row.extra["traceback"] = traceback.format_exc()
        self.echo(f"   {row.status} {row.reason}".rstrip())
        return row

    def ensure_checkpoint(self) -> bool:
        a = self.args
        if os.path.exists(os.path.join(a.model_dir, "config.json")):
            return True
        cmd = djinn.synth_cmd(a.bin, a.model, a.model_dir, None if a.dtype == "auto" else a.dtype)
        self.echo(f"== checkpoint: {a.model_dir} has no config.json; writing a random {a.model}")
        outcome = self.runner.run(cmd, a.synth_timeout, os.path.join(a.out, "logs", "djinn-synth.log"))
        if outcome.dry_run:
            return True
        if outcome.rc != 0 or outcome.timed_out:
            self.meta["notes"].append(f"djinn-synth failed (exit {outcome.rc}); no system could run")
            return False
        self.meta["notes"].append(f"checkpoint written by djinn-synth in {outcome.wall_s:.0f} s")
        return True

    def measure_profile(self, ctx) -> str:
        """`--gpu measure`: djinn-profile's profile of this machine (OUT/profile.toml), or `auto` with a
        note when it cannot be measured."""
        a = self.args
        if a.cpu:
            self.meta["notes"].append("--gpu measure needs a GPU (this is a --cpu run): plans from the device's preset")
            return "auto"
        path, log = os.path.join(a.out, "profile.toml"), os.path.join(a.out, "logs", "djinn-profile.log")
        cmd = djinn.profile_cmd(a.bin, a.model_dir, a.prompt_len, path, os.path.join(a.out, "profile-log.json"))
        self.echo("== djinn-profile: this machine, for every plan of the run")
        outcome = self.runner.run(cmd, a.timeout, log)
        if not outcome.dry_run and (outcome.rc != 0 or outcome.timed_out or not os.path.exists(path)):
            why = "timed out" if outcome.timed_out else f"exit {outcome.rc}: {last_line(outcome.tail)}"
            self.meta["notes"].append(f"djinn-profile failed ({why}; {log}): plans from the device's preset")
            return "auto"
        self.meta["profile"] = {"path": path, "command": cmd, "wall_s": outcome.wall_s}
        return path

    def run(self) -> str:
        a = self.args
        os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
        have_checkpoint = self.ensure_checkpoint()

        config = model_config(a.model_dir)
        dtype = checkpoint_dtype(config) if a.dtype == "auto" else a.dtype
        self.meta["dtype"] = dtype
        ids, how = prompt.build_prompt(a.model_dir, a.prompt_len, int(config.get("vocab_size", 32000)))
        paths = prompt.write_prompt(a.out, ids)
        self.meta["prompt"] = how
        ctx = systems.Context(
            bin_dir=a.bin, model_dir=a.model_dir, out_dir=a.out, cap_bytes=a.cap, prompt_len=a.prompt_len,
            new_tokens=a.new_tokens, max_seq_len=a.max_seq_len, gpu=a.gpu, dtype=dtype, runner=self.runner,
            prompt_paths=paths, python=a.python, timeout_s=a.timeout, hf_headroom_bytes=a.hf_headroom,
            warmup=a.warmup, backend="cpu" if a.cpu else "cuda",
        )  # fmt: skip
        if a.cpu:
            self.meta["notes"].append("--cpu smoke run: no GPU, no cap; timings are CPU timings")

        self.echo("== pinned host-to-device bandwidth")
        measured = systems.measure_h2d(ctx)
        if measured.get("h2d_gbps") or not self.h2d.get("h2d_gbps"):
            self.h2d = measured
        self.meta.update(h2d=self.h2d, h2d_gbps=self.h2d.get("h2d_gbps"), gpu_name=self.h2d.get("gpu_name"))
        if ctx.gpu == "measure":
            ctx.gpu = self.measure_profile(ctx)
        if ctx.gpu == "auto":
            ctx.gpu = djinn.gpu_preset_for(self.h2d.get("gpu_name", "")) or "h100-sxm"
            if not self.h2d.get("gpu_name"):
                self.meta["notes"].append("GPU name unknown (H2D measurement did not run): djinn-compile --gpu h100-sxm")
        self.meta["gpu_preset"] = ctx.gpu
        self.save()

        plan = [(s, lambda s=s: systems.run_djinn(ctx, s, a.cap)) for s in ("djinn", "sync", "stream-all")]
        plan += [("hf-offload", lambda: systems.run_hf(ctx, "offload")), ("hf-gpu", lambda: systems.run_hf(ctx, "gpu"))]
        for name, fn in plan:
            if name not in a.selected:
                continue
            if not have_checkpoint:
                self.main_rows.append(Row(system=name, kind="?", cap_bytes=a.cap, status=SKIPPED, reason="no checkpoint"))
                continue
            self.main_rows.append(self.guarded(name, fn, a.cap, ctx))
            if name == "djinn":
                self.main_rows.append(systems.copy_floor_row(self.main_rows[-1], self.h2d))
            self.save()

        if "sweep" in a.selected and have_checkpoint:
            for budget in a.sweep_budgets:
                name = f"djinn@{budget / 2**30:g}GiB"
                fn = lambda b=budget, n=name: systems.run_djinn(ctx, "djinn", b, n)  # noqa: E731
                self.sweep_rows.append(self.guarded(name, fn, budget, ctx))
                self.save()
        self.meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        return self.save()


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    runner = DryRunner() if args.dry_run else SubprocessRunner()
    md = Harness(args, runner).run()
    print()
    print(md)
    print(f"wrote {os.path.join(args.out, 'results.md')}, results.json, budget.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
