"""Per-block breakdown of a `djinn-exec --trace` file: medians over decode passes 2.., µs.

    python3 bench/gpu/trace_breakdown.py trace.json[.gz] plan.toml

Prints, per block in model order, the measured compute-lane span and the plan's predicted span;
where decode ran as CUDA graphs (runtime/src/cuda/graph.rs), one row per segment's graph instead,
against the sum of its blocks' predictions; then the copy-lane spans; then the decode token's sum
of compute spans against the pass length, and the gaps (compute lane idle inside a pass, waiting
on a copy). Last, a layer's GPU blocks: the device spans' measured time against their predicted
time, times the plan's predicted layer (attention + MLP on the device), so per-block and
per-graph traces give comparable figures; per-block traces also give the mean over the layers
whose blocks all ran on the device.
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
    meas, copies, busy, device = {}, {}, [], []
    spans = [e for e in ev if e.get("pid") == 1 and e.get("ph") == "X" and e.get("tid") in (1, 2)]
    compute_steps = [s for s in plan["decode"]["steps"] if s["lane"] == "compute"]
    pred, order = {}, [s["block"] for s in compute_steps]
    for s in compute_steps:
        pred[s["block"]] = (s["end_us"] - s["start_us"], s["op"])

    def blocks_of(e):
        g = e["args"].get("graph")
        if not g:
            return [e["name"]]
        i, j = order.index(g["first"]), order.index(g["last"])
        return order[i:j + 1]

    by_pass = {}
    for e in spans:
        by_pass.setdefault(e["args"].get("pass"), []).append(e)
    for i in sorted(first):
        comp = sorted((e for e in by_pass.get(i, []) if e["tid"] == 2), key=lambda e: e["ts"])
        dev = [0.0, 0.0]
        for e in comp:
            meas.setdefault(e["name"], []).append(e["dur"])
            bs = blocks_of(e)
            if all(pred.get(b, (0, ""))[1] == "compute" for b in bs):
                dev[0] += e["dur"]
                dev[1] += sum(pred[b][0] for b in bs)
        device.append(dev)
        for e in by_pass.get(i, []):
            if e["tid"] == 1:
                copies.setdefault(e["name"], []).append((e["dur"], e["args"].get("GB/s", 0)))
        if comp:
            span = comp[-1]["ts"] + comp[-1]["dur"] - comp[0]["ts"]
            busy.append((sum(e["dur"] for e in comp), span))
    graph_rows = {}
    for e in spans:
        if e["tid"] == 2 and e["args"].get("graph") and e["args"].get("pass") in first:
            graph_rows.setdefault(e["name"], e)
    print(f"{len(decode)} decode passes (the first skipped); medians in us")
    print(f"{'block':16} {'measured':>9} {'predicted':>9}")
    for b in plan["model"]["blocks"]:
        n = b["name"]
        if n in meas:
            p, op = pred.get(n, (float("nan"), ""))
            tag = "  host_compute" if op == "host_compute" else ""
            print(f"{n:16} {statistics.median(meas[n]):9.1f} {p:9.1f}{tag}")
    for n, e in sorted(graph_rows.items(), key=lambda kv: order.index(kv[1]["args"]["graph"]["first"])):
        p = sum(pred[b][0] for b in blocks_of(e))
        print(f"{n:48} {statistics.median(meas[n]):9.1f} {p:9.1f}")
    for n, v in sorted(copies.items()):
        print(f"{n:22} {statistics.median(d for d, _ in v):9.1f} us  {statistics.median(g for _, g in v):5.1f} GB/s  x{len(v) // max(1, len(decode))}/token")
    if busy:
        s, t = statistics.median(b for b, _ in busy), statistics.median(t for _, t in busy)
        host = sum(statistics.median(meas[n]) for n in meas if pred.get(n, (0, ""))[1] == "host_compute")
        print(f"decode pass: compute spans {s / 1e3:.2f} ms of a {t / 1e3:.2f} ms pass (host computes {host / 1e3:.2f} ms); lane idle {(t - s) / 1e3:.2f} ms")
    # The plan's predicted layer: attention and MLP blocks of one layer, all on the device.
    layers = {}
    for b in order:
        if b.startswith("layer."):
            layers.setdefault(b.split(".")[1], []).append(b)
    full = [sum(pred[b][0] for b in bs) for bs in layers.values() if all(pred[b][1] == "compute" for b in bs)]
    if device and full:
        m, p = statistics.median(d for d, _ in device), statistics.median(q for _, q in device)
        layer = statistics.median(full)
        print(f"device compute spans: {m / 1e3:.3f} ms a token against {p / 1e3:.3f} predicted for the same blocks "
              f"({m / p:.3f}x); a layer's GPU blocks {m / p * layer:.1f} us (predicted {layer:.1f})")
        whole = [sum(statistics.median(meas[b]) for b in bs) for bs in layers.values()
                 if all(pred[b][1] == "compute" and b in meas for b in bs)]
        if whole:
            print(f"layers whose blocks all ran on the device, traced block by block: {statistics.mean(whole):.1f} us "
                  f"a layer (mean of {len(whole)})")

main()
