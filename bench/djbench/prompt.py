"""The benchmark prompt: exactly `prompt_len` token ids, the same for every system.

Built from the checkpoint's own tokenizer: a paragraph of English repeated
until it tokenizes to at least `prompt_len` ids (BOS first), then cut. Every
system is handed these ids, not the text, so no system can tokenize to a
different length. Without a tokenizer (a vocabulary other than Llama 2's) the
ids are a seeded pseudo-random sequence, and the run's notes say so.
"""
from __future__ import annotations

import json
import os
import random

TEXT = (
    "The history of computing is a history of memory. Every generation of machines has been limited less by "
    "how fast it could calculate than by how much it could remember, and how quickly it could bring what it "
    "remembered to the place where the calculation happened. Engineers built caches, then caches for the caches, "
    "and schedules that moved data before it was needed, so that the arithmetic units never had to wait. "
)

BOS = 1


def encode_with_tokenizer(model_dir: str, text: str):
    """Token ids of `text` with the BOS the model expects, or None when no tokenizer can be loaded."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        return None
    try:
        from tokenizers import Tokenizer  # ships with transformers
    except ImportError:
        return None
    return Tokenizer.from_file(path).encode(text, add_special_tokens=True).ids


def build_prompt(model_dir: str, prompt_len: int, vocab_size: int, encode=encode_with_tokenizer):
    """Returns (ids, how): exactly `prompt_len` ids and a note on how they were made."""
    text = TEXT
    ids = encode(model_dir, text)
    if ids is None:
        rng = random.Random(0)
        ids = [BOS] + [rng.randrange(3, vocab_size) for _ in range(prompt_len - 1)]
        return ids, "no tokenizer in the model directory: seeded pseudo-random ids after BOS"
    while len(ids) < prompt_len:
        text = text + TEXT
        ids = encode(model_dir, text)
    ids = ids[:prompt_len]
    return ids, f"tokenizer.json: an English paragraph repeated, cut to {prompt_len} ids"


def write_prompt(out_dir: str, ids: list) -> dict:
    """Writes the ids as JSON (for the Python systems) and as whitespace-separated text (for djinn-exec)."""
    paths = {"json": os.path.join(out_dir, "prompt_ids.json"), "txt": os.path.join(out_dir, "prompt_ids.txt")}
    with open(paths["json"], "w") as f:
        json.dump(ids, f)
    with open(paths["txt"], "w") as f:
        f.write(" ".join(str(i) for i in ids) + "\n")
    return paths
