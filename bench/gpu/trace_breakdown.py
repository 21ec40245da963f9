"""Per-block breakdown of a `djinn-exec --trace` file: medians over decode passes 2.., µs.

    python3 bench/gpu/trace_breakdown.py trace.json[.gz] plan.toml

Prints, per block in model order, the measured compute-lane span and the plan's predicted span;
then the copy-lane spans; then the decode token's sum of compute spans against the pass length,
and the gaps (compute lane idle inside a pass, waiting on a copy).
"""
import gzip, json, statistics, sys, tomllib

def load(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rt") as f:
        return json.load(f)["traceEvents"]

def main():
    ev, plan = load(sys.argv[1]), tomllib.load(open(sys.argv[2], "rb"))
    passes = sorted((e for e in ev if e.get("pid") == 1 and e.get("tid") == 3 and e.get("ph") == "X"), key=lambda e: e["ts"])
    decode = [p for p in passes if p["name"].startswith("decode ")][1:]
    first = {i for i, p in enumerate(passes) if p in decode}
    meas, copies, busy = {}, {}, []
    spans = [e for e in ev if e.get("pid") == 1 and e.get("ph") == "X" and e.get("tid") in (1, 2)]
    by_pass = {}
    for e in spans:
        by_pass.setdefault(e["args"].get("pass"), []).append(e)
    for i in sorted(first):
        comp = sorted((e for e in by_pass.get(i, []) if e["tid"] == 2), key=lambda e: e["ts"])
        for e in comp:
            meas.setdefault(e["name"], []).append(e["dur"])
        for e in by_pass.get(i, []):
            if e["tid"] == 1:
                copies.setdefault(e["name"], []).append((e["dur"], e["args"].get("GB/s", 0)))
        if comp:
            span = comp[-1]["ts"] + comp[-1]["dur"] - comp[0]["ts"]
            busy.append((sum(e["dur"] for e in comp), span))
    pred = {}
    for s in plan["decode"]["steps"]:
        if s["lane"] == "compute":
            pred[s["block"]] = (s["end_us"] - s["start_us"], s["op"])
    print(f"{len(decode)} decode passes (the first skipped); medians in us")
    print(f"{'block':16} {'measured':>9} {'predicted':>9}")
    for b in plan["model"]["blocks"]:
        n = b["name"]
        if n in meas:
            p, op = pred.get(n, (float("nan"), ""))
            tag = "  host_compute" if op == "host_compute" else ""
            print(f"{n:16} {statistics.median(meas[n]):9.1f} {p:9.1f}{tag}")
    for n, v in sorted(copies.items()):
        print(f"{n:22} {statistics.median(d for d, _ in v):9.1f} us  {statistics.median(g for _, g in v):5.1f} GB/s  x{len(v) // max(1, len(decode))}/token")
    if busy:
        s, t = statistics.median(b for b, _ in busy), statistics.median(t for _, t in busy)
        host = sum(statistics.median(meas[n]) for n in meas if pred.get(n, (0, ""))[1] == "host_compute")
        print(f"decode pass: compute spans {s / 1e3:.2f} ms of a {t / 1e3:.2f} ms pass (host computes {host / 1e3:.2f} ms); lane idle {(t - s) / 1e3:.2f} ms")

main()
