"""One result row per system run, and the derived figures every row shares.

Every system (a Djinn strategy, transformers with accelerate offload, GPU-only
transformers, a point of the budget sweep) ends as one `Row`, whether it ran,
ran out of memory, timed out, or crashed: the harness never drops a system, it
records why it has no numbers. Derived figures (end-to-end time, tokens/s, the
error of Djinn's prediction) are computed here once, so the table, the JSON
and the plot cannot disagree.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Optional

OK = "ok"
OOM = "oom"
FAILED = "failed"
TIMEOUT = "timeout"
SKIPPED = "skipped"


@dataclass
class Row:
    # `djinn`, `sync`, `stream-all`, `hf-offload`, `hf-gpu`, `copy-floor`, `djinn@13GiB` (sweep).
    system: str
    # `djinn` (djinn-exec), `hf` (transformers), `floor` (derived from the copy bandwidth).
    kind: str
    status: str = SKIPPED
    reason: str = ""
    # The whole-process device-memory cap the system ran under, bytes.
    cap_bytes: Optional[int] = None
    ttft_ms: Optional[float] = None
    # Wall time of each decode step after the first token, ms (its median is the headline).
    decode_step_ms: list = field(default_factory=list)
    # Set directly when a system reports only the aggregate (djinn-exec may).
    decode_ms_per_token_reported: Optional[float] = None
    new_tokens: Optional[int] = None
    peak_device_bytes: Optional[int] = None
    # How peak_device_bytes was measured (it differs between torch and djinn-exec).
    peak_method: str = ""
    # Djinn only: the plan's [prediction] (ttft_ms, decode_ms_per_token, streamed_bytes_per_token, ...).
    predicted: dict = field(default_factory=dict)
    load_s: Optional[float] = None
    commands: list = field(default_factory=list)
    log: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def decode_ms_per_token(self) -> Optional[float]:
        if self.decode_step_ms:
            return float(statistics.median(self.decode_step_ms))
        return self.decode_ms_per_token_reported

    @property
    def e2e_ms(self) -> Optional[float]:
        """Prompt in to last token out: TTFT plus every decode step (or the median times their count)."""
        if self.ttft_ms is None:
            return None
        if self.decode_step_ms:
            return self.ttft_ms + sum(self.decode_step_ms)
        if self.decode_ms_per_token_reported is not None and self.new_tokens:
            return self.ttft_ms + self.decode_ms_per_token_reported * (self.new_tokens - 1)
        return None

    @property
    def decode_tokens_per_s(self) -> Optional[float]:
        d = self.decode_ms_per_token
        return 1000.0 / d if d else None

    def error_pct(self) -> dict:
        """Measured vs predicted, in % of the measured figure (positive: prediction too optimistic)."""
        out = {}
        for key, measured in (("ttft_ms", self.ttft_ms), ("decode_ms_per_token", self.decode_ms_per_token)):
            pred = self.predicted.get(key)
            if pred is not None and measured:
                out[key] = 100.0 * (measured - pred) / measured
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(
            decode_ms_per_token=self.decode_ms_per_token,
            e2e_ms=self.e2e_ms,
            decode_tokens_per_s=self.decode_tokens_per_s,
            error_pct=self.error_pct(),
        )
        return d


DERIVED = ("decode_ms_per_token", "e2e_ms", "decode_tokens_per_s", "error_pct")


def row_from_json(d: dict) -> Row:
    """A row as `Row.to_json` wrote it (derived figures are recomputed, not read)."""
    fields = {k: v for k, v in d.items() if k not in DERIVED and k in Row.__dataclass_fields__}
    return Row(**fields)


def copy_floor_ms(streamed_bytes_per_token: Optional[int], h2d_gbps: Optional[float]) -> Optional[float]:
    """The decode time no schedule can beat: the bytes streamed per token at the measured H2D rate."""
    if streamed_bytes_per_token is None or not h2d_gbps:
        return None
    return streamed_bytes_per_token / (h2d_gbps * 1e9) * 1e3
