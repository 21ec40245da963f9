"""Djinn's side of the benchmark: the djinn-compile and djinn-exec command lines,
the plan's prediction, and djinn-exec's metrics.

The command lines live here and nowhere else, so a change of a flag in either
binary is a change of this file.
"""
from __future__ import annotations

import json
import os
import re

# GPU presets of djinn-compile, by a substring of torch.cuda.get_device_name().
GPU_PRESETS = [
    ("H200", "h200"),
    ("H100 PCIe", "h100-pcie"),
    ("H100", "h100-sxm"),
    ("A100-SXM4-80GB", "a100-80gb"),
    ("A100 80GB", "a100-80gb"),
    ("A100", "a100-40gb"),
    ("A10G", "a10g"),
    ("L4", "l4"),
    ("RTX 4090", "rtx4090"),
    ("T4", "t4"),
]


def gpu_preset_for(device_name: str):
    """djinn-compile's GPU preset for a CUDA device name, or None."""
    for needle, preset in GPU_PRESETS:
        if needle.lower() in (device_name or "").lower():
            return preset
    return None


def compile_cmd(bin_dir, gpu, budget_bytes, model_dir, prompt_len, max_seq_len, strategy, plan_path):
    return [
        os.path.join(bin_dir, "djinn-compile"),
        "--gpu", gpu,
        "--budget", str(budget_bytes),
        "--model", model_dir,
        "--prompt-len", str(prompt_len),
        "--max-seq-len", str(max_seq_len),
        "--strategy", strategy,
        "-o", plan_path,
    ]  # fmt: skip


def profile_cmd(bin_dir, model_dir, prompt_len, profile_path, json_path):
    """djinn-profile of this machine for the checkpoint's model (block times under the name
    djinn-compile gives the same directory) at the benchmark's prompt length."""
    return [
        os.path.join(bin_dir, "djinn-profile"),
        "--model", model_dir,
        "--prompt-len", str(prompt_len),
        "--name", "measured",
        "-o", profile_path,
        "--json", json_path,
    ]  # fmt: skip


def exec_cmd(bin_dir, plan_path, model_dir, prompt_ids_txt, new_tokens, metrics_path, backend="cuda"):
    """djinn-exec under the plan's budget (`--enforce-budget`: a ballast takes the rest of the device),
    on exactly the prompt's ids, for exactly `new_tokens` tokens (`--ignore-eos`, as transformers is run)."""
    cmd = [
        os.path.join(bin_dir, "djinn-exec"),
        plan_path,
        "--weights", model_dir,
        "--backend", backend,
        "--prompt-ids", prompt_ids_txt,
        "--max-new-tokens", str(new_tokens),
        "--ignore-eos",
        "--json", metrics_path,
    ]  # fmt: skip
    return cmd + ["--enforce-budget"] if backend == "cuda" else cmd


def synth_cmd(bin_dir, model, out_dir, dtype=None):
    """djinn-synth's command; without `dtype`, the preset's own (f16 for Llama 2)."""
    cmd = [os.path.join(bin_dir, "djinn-synth"), "--model", model, "-o", out_dir]
    return cmd + ["--dtype", dtype] if dtype else cmd


def _parse_toml_table(text: str, table: str) -> dict:
    """`key = number` lines of one top-level table, for Pythons without tomllib (< 3.11)."""
    out, inside = {}, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            inside = line == f"[{table}]"
            continue
        m = re.match(r"^([A-Za-z0-9_]+)\s*=\s*([-+0-9.eE_]+|inf|nan)\s*(#.*)?$", line)
        if inside and m:
            v = m.group(2).replace("_", "")
            out[m.group(1)] = float(v) if any(c in v for c in ".eEn") else int(v)
    return out


def plan_prediction(plan_path: str) -> dict:
    """The plan's `[prediction]` table (ttft_ms, decode_ms_per_token, streamed_bytes_per_token, ...)."""
    with open(plan_path) as f:
        text = f.read()
    try:
        import tomllib
    except ImportError:
        return _parse_toml_table(text, "prediction")
    return dict(tomllib.loads(text).get("prediction", {}))


# djinn-exec's --json keys, and the names this harness uses for them.
METRIC_KEYS = {
    "ttft_ms": ["ttft_ms"],
    "decode_step_ms": ["decode_step_ms", "decode_ms"],
    "decode_ms_per_token": ["decode_ms_per_token", "decode_ms_per_token_median"],
    "peak_device_bytes": ["peak_device_bytes", "device_peak_bytes", "peak_bytes"],
    "peak_method": ["peak_method"],
    "tokens": ["tokens", "generated_ids", "output_ids"],
}


def exec_metrics(metrics_path: str) -> dict:
    """djinn-exec's --json metrics, under the harness's names (missing keys are absent)."""
    with open(metrics_path) as f:
        raw = json.load(f)
    out = {"raw": raw}
    for ours, theirs in METRIC_KEYS.items():
        for k in theirs:
            if k in raw:
                out[ours] = raw[k]
                break
    return out
