B=.device/bin
[ -e /tmp/llama2-13b/config.json ] || $B/djinn-synth --model llama2-13b -o /tmp/llama2-13b 2>&1 | tail -1
python3 -c "import random; random.seed(0); print(' '.join(['1']+[str(random.randrange(3,32000)) for _ in range(511)]))" > /tmp/ids.txt
$B/djinn-compile --gpu profiles/h200-measured.toml --budget 22GiB --model /tmp/llama2-13b --prompt-len 512 --max-seq-len 1024 -o /tmp/plan.toml 2>&1 | tail -1
for s in 20000 2000 300 50 0 20000; do
  echo "== DJINN_TEAM_SPIN_US=$s"
  DJINN_TEAM_SPIN_US=$s timeout 60 $B/djinn-exec /tmp/plan.toml --weights /tmp/llama2-13b --backend cuda --enforce-budget --prompt-ids /tmp/ids.txt --max-new-tokens 50 --ignore-eos --trace /tmp/t-$s.json 2>&1 | grep -E "TTFT|decode "
  python3 bench/gpu/trace_breakdown.py /tmp/t-$s.json /tmp/plan.toml | grep -E "host_compute|^layer\.(7|14|21)\.attn|^layer.0.attn|decode pass"
done
