#!/usr/bin/env python3
"""TTFT and per-token latency of a plan through djinn-serve's API, beside djinn-exec's own figures.

    python3 bench/gpu/serve_vs_exec.py --bin DIR --plan PLAN --weights DIR --out DIR [--reps 3]

Starts `djinn-serve PLAN --weights DIR --backend cuda --enforce-budget`, waits for /health, then
sends `--reps` streamed /v1/completions requests (greedy, 50 tokens) with one prompt, timing the
first streamed text (TTFT through the API: HTTP, tokenizer and queue included) and the rest of the
stream (per token: (last - first) / (tokens - 1), tokens from the response's usage). djinn-exec runs
the same prompt before and after the server (its --json TTFT and decode ms/token). Prints one line
per run and writes OUT/serve-vs-exec.json.
"""
import argparse, json, os, subprocess, sys, time, urllib.request

SENTENCE = "The quick brown fox jumps over the lazy dog while the river runs to the sea."
PROMPT = ""


def exec_run(a, i):
    out = os.path.join(a.out, f"exec-{i}.json")
    subprocess.run([f"{a.bin}/djinn-exec", a.plan, "--weights", a.weights, *a.backend_args,
                    "--prompt", PROMPT, "--max-new-tokens", "50", "--ignore-eos", "--json", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    m = json.load(open(out))
    return {"ttft_ms": m["ttft_ms"], "decode_ms_per_token": m["decode_ms_per_token"], "tokens": m.get("new_tokens")}


def api_run(port):
    body = json.dumps({"prompt": PROMPT, "max_tokens": 50, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = last = None
    usage = None
    with urllib.request.urlopen(req, timeout=120) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if any(c.get("text") for c in chunk.get("choices", [])):
                now = time.perf_counter()
                first = first or now
                last = now
    n = usage["completion_tokens"] if usage else None
    return {"ttft_ms": (first - t0) * 1e3, "decode_ms_per_token": (last - first) * 1e3 / max(1, (n or 2) - 1),
            "tokens": n, "prompt_tokens": usage and usage["prompt_tokens"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--plan", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--repeat", type=int, default=18, help="copies of the sentence in the prompt (18: about 330 tokens)")
    p.add_argument("--backend", default="cuda", help="cuda (with --enforce-budget) or cpu, for a dry run on the fixture")
    a = p.parse_args()
    global PROMPT
    PROMPT = " ".join([SENTENCE] * a.repeat)
    a.backend_args = ["--backend", "cuda", "--enforce-budget"] if a.backend == "cuda" else ["--backend", a.backend]
    os.makedirs(a.out, exist_ok=True)
    res = {"exec": [], "api": []}
    res["exec"].append(exec_run(a, 0))
    print("djinn-exec", res["exec"][-1], flush=True)
    log = open(os.path.join(a.out, "serve.log"), "w")
    srv = subprocess.Popen([f"{a.bin}/djinn-serve", a.plan, "--weights", a.weights, *a.backend_args, "--port", str(a.port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{a.port}/health", timeout=2)
                break
            except Exception:
                if srv.poll() is not None:
                    sys.exit(f"djinn-serve exited with {srv.returncode}; see serve.log")
                time.sleep(0.5)
        for i in range(a.reps):
            res["api"].append(api_run(a.port))
            print("api", i, res["api"][-1], flush=True)
    finally:
        srv.terminate()
        srv.wait(timeout=60)
    res["exec"].append(exec_run(a, 1))
    print("djinn-exec", res["exec"][-1], flush=True)
    json.dump(res, open(os.path.join(a.out, "serve-vs-exec.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
