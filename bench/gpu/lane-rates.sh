#!/bin/bash
# Where a capped decode token goes, in one lease (2026-12-03 afternoon session): the host's
# matrix-vector rate with and without copies and with its head read ahead (examples/host_prefetch),
# a fresh djinn-profile of this lease, then the 22 GiB plan compiled from the committed profile (A)
# and from this lease's (B), alternating untraced, one traced run of each with its per-block
# breakdown, and A with a team of 15 threads (one more core for the thread issuing device work).
# Binaries in $BIN (or .device/bin.tgz).
. bench/gpu/lib.sh
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
ids 512 0 > /tmp/ids.txt
echo "== host matrix-vector, head read ahead"; date
$B/host_prefetch --reps 12 --gap-us 700 --copies
echo "== djinn-profile"; date
timeout 240 $B/djinn-profile --model llama2-13b --prompt-len 512 --name h200-today -o $OUT/h200-today.toml > /tmp/profile.txt 2>&1 || tail -5 /tmp/profile.txt
grep -iE "host|copies|cpu|pinned" /tmp/profile.txt | head -12
C="$B/djinn-compile --model /tmp/llama2-13b --budget 22GiB --prompt-len 512 --max-seq-len 562"
$C --gpu profiles/h200-measured.toml -o /tmp/plan-A.toml 2> $OUT/summary-A.txt
$C --gpu $OUT/h200-today.toml -o /tmp/plan-B.toml 2> $OUT/summary-B.txt || cp /tmp/plan-A.toml /tmp/plan-B.toml
grep -hE "^host CPU|^predicted|^streamed:" $OUT/summary-A.txt $OUT/summary-B.txt
echo "== 22 GiB, A (committed profile) against B (this lease's), alternating"; date
for i in 1 2; do run_exec A$i /tmp/plan-A.toml; run_exec B$i /tmp/plan-B.toml; done
run_exec A15 /tmp/plan-A.toml DJINN_THREADS=15
for p in A B; do
  EXTRA="--trace /tmp/trace-$p.json" run_exec traced-$p /tmp/plan-$p.toml
  python3 bench/gpu/trace_breakdown.py /tmp/trace-$p.json /tmp/plan-$p.toml > $OUT/breakdown-$p.txt 2>&1; tail -8 $OUT/breakdown-$p.txt
done
python3 -c "
import json
for t in ['A1','B1','A2','B2','A15','traced-A','traced-B']:
    try: d = json.load(open('/tmp/m-%s.json' % t))
    except Exception: continue
    v = d['device']; print(t, 'copy lane', round(v['copy_gbps'], 1), 'GB/s, busy', round(v['decode_copy_busy'], 3), 'decode', round(d['decode_ms_per_token'], 2), 'predicted', round(d['predicted_decode_ms_per_token'], 2))
"
echo "== resident: prefill blocks in a traced run against cuda_ops in the same call"; date
$B/djinn-compile --gpu profiles/h200-measured.toml --model /tmp/llama2-13b --budget 30GiB --prompt-len 512 --max-seq-len 562 -o /tmp/plan-R.toml 2> /dev/null
run_exec R /tmp/plan-R.toml
EXTRA="--trace /tmp/trace-R.json" run_exec traced-R /tmp/plan-R.toml
python3 - /tmp/trace-R.json <<'PY'
import json, sys, statistics
ev = json.load(open(sys.argv[1]))["traceEvents"]
passes = sorted((e for e in ev if e.get("pid") == 1 and e.get("tid") == 3 and e.get("ph") == "X"), key=lambda e: e["ts"])
print("passes:", [(p["name"], round(p["dur"] / 1e3, 2)) for p in passes[:3]])
for pid, who in ((1, "measured"), (2, "predicted")):
    sp = [e for e in ev if e.get("pid") == pid and e.get("ph") == "X" and e.get("tid") == 2 and e["args"].get("pass") == 0]
    kinds = {}
    for e in sp:
        k = e["name"].split(".")[-1].split(" ")[0] if e["name"].startswith("layer.") else e["name"]
        kinds.setdefault(k, []).append(e["dur"])
    print("prefill", who, {k: (len(v), round(statistics.median(v), 1)) for k, v in kinds.items()}, "sum ms", round(sum(e["dur"] for e in sp) / 1e3, 2))
PY
$B/cuda_ops --reps 30 > $OUT/cuda-ops.txt 2>&1; grep -A12 -- "-- prefill (" $OUT/cuda-ops.txt
cd /tmp && tar czf $OUT/runs.tgz m-*.json exec-*.txt plan-A.toml plan-B.toml profile.txt && cd - > /dev/null
date
