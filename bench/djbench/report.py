"""results.md and results.json: the table a person reads and the data a script reads.

Both are rewritten after every system, so a run cut short still leaves what it
measured. Every row is printed, failures included, with their reason.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Optional

from .results import Row


def fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def fmt_bytes(v: Optional[int]) -> str:
    if v is None:
        return "-"
    return f"{v / 2**30:.2f} GiB"


def fmt_pred(pred: Optional[float], err: Optional[float]) -> str:
    if pred is None:
        return "-"
    return f"{fmt_ms(pred)} ({err:+.0f}%)" if err is not None else fmt_ms(pred)


HEADER = [
    "system",
    "status",
    "cap",
    "TTFT ms",
    "decode ms/token",
    "end-to-end ms",
    "decode tokens/s",
    "peak device memory",
    "predicted TTFT ms (err)",
    "predicted decode ms (err)",
    "notes",
]


def row_cells(r: Row) -> list:
    err = r.error_pct()
    tps = r.decode_tokens_per_s
    note = r.reason if r.status != "ok" else r.extra.get("note", "")
    return [
        r.system,
        r.status,
        fmt_bytes(r.cap_bytes),
        fmt_ms(r.ttft_ms),
        fmt_ms(r.decode_ms_per_token),
        fmt_ms(r.e2e_ms),
        f"{tps:.2f}" if tps else "-",
        fmt_bytes(r.peak_device_bytes),
        fmt_pred(r.predicted.get("ttft_ms"), err.get("ttft_ms")),
        fmt_pred(r.predicted.get("decode_ms_per_token"), err.get("decode_ms_per_token")),
        note.replace("|", "/").replace("\n", " ")[:200],
    ]


def markdown_table(rows: Iterable[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(row_cells(r)) + " |")
    return "\n".join(lines) + "\n"


def markdown(meta: dict, main_rows: list, sweep_rows: list) -> str:
    out = [f"# Djinn benchmark: {meta.get('model') or '?'} on {meta.get('gpu_name') or 'an unknown GPU'}", ""]
    out.append(
        f"Prompt {meta.get('prompt_len')} tokens, {meta.get('new_tokens')} new tokens, batch 1, "
        f"every system capped at {fmt_bytes(meta.get('cap_bytes'))} of device memory. "
        f"Pinned host-to-device copy: {meta['h2d_gbps']:.1f} GB/s (measured in this run)."
        if meta.get("h2d_gbps")
        else f"Prompt {meta.get('prompt_len')} tokens, {meta.get('new_tokens')} new tokens, batch 1, "
        f"every system capped at {fmt_bytes(meta.get('cap_bytes'))} of device memory. "
        "Pinned host-to-device bandwidth: not measured."
    )
    out += ["", markdown_table(main_rows)]
    if sweep_rows:
        out += ["## Djinn across device-memory budgets", "", markdown_table(sweep_rows)]
    out += [
        "Decode ms/token is the median over the decode steps after the first token; end-to-end is TTFT plus "
        "every decode step; decode tokens/s is 1000 / decode ms/token. Prediction errors are "
        "(measured - predicted) / measured.",
        "",
        "Peak device memory: for transformers, torch.cuda.max_memory_reserved() minus the ballast (what the "
        "caching allocator took within the cap; the CUDA context is not included); for Djinn, what djinn-exec "
        "reports in its --json metrics (see each row's peak_method in results.json).",
        "",
    ]
    if meta.get("notes"):
        out += ["Notes:", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(out)


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_results(out_dir: str, meta: dict, main_rows: list, sweep_rows: list) -> str:
    """Writes results.md and results.json; returns the Markdown."""
    md = markdown(meta, main_rows, sweep_rows)
    write_atomic(os.path.join(out_dir, "results.md"), md)
    data = {
        "meta": meta,
        "systems": [r.to_json() for r in main_rows],
        "sweep": [r.to_json() for r in sweep_rows],
    }
    write_atomic(os.path.join(out_dir, "results.json"), json.dumps(data, indent=2) + "\n")
    return md
