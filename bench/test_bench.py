#!/usr/bin/env python3
"""Tests of the harness's pure-Python parts, runnable without a GPU:

    python3 -m unittest discover -s bench -p 'test_*.py' -v

The orchestration is exercised end to end with a fake runner that writes what
each real command would (plans, djinn-exec metrics, worker results), including
failures (a budget the compiler refuses, an out-of-memory, a timeout, a crash).
With torch and transformers importable (e.g. a venv made as bench/README.md
says), the transformers worker also runs on the CPU on the tiny fixture and
must reproduce the fixture's reference greedy tokens.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import unittest.mock
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run  # noqa: E402
from djbench import djinn, prompt, report, svg, systems  # noqa: E402
from djbench.results import Row, copy_floor_ms  # noqa: E402
from djbench.runner import DryRunner, Outcome, SubprocessRunner  # noqa: E402

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny-llama-mha")
GIB = 2**30


def has_module(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


class ParsingTest(unittest.TestCase):
    def test_byte_sizes_as_djinn_compile_reads_them(self):
        self.assertEqual(run.parse_bytes("22GiB"), 22 * GIB)
        self.assertEqual(run.parse_bytes("22 GiB"), 22 * GIB)
        self.assertEqual(run.parse_bytes("1.5GB"), 1_500_000_000)
        self.assertEqual(run.parse_bytes("1073741824"), GIB)
        with self.assertRaises(Exception):
            run.parse_bytes("22 parsecs")

    def test_sweep_budgets_default_to_gib(self):
        self.assertEqual(run.parse_budgets("9, 13.5,1GB"), [9 * GIB, int(13.5 * GIB), 10**9])

    def test_only_rejects_unknown_systems(self):
        with self.assertRaises(SystemExit), unittest.mock.patch("sys.stderr", io.StringIO()):
            run.parse_args(["--model-dir", "m", "--out", "o", "--only", "djinn,vllm"])

    def test_sweep_is_off_unless_asked(self):
        self.assertNotIn("sweep", run.parse_args(["--model-dir", "m", "--out", "o"]).selected)
        self.assertIn("sweep", run.parse_args(["--model-dir", "m", "--out", "o", "--sweep"]).selected)
        a = run.parse_args(["--model-dir", "m", "--out", "o", "--only", "hf-offload"])
        self.assertEqual(a.selected, ["hf-offload"])

    def test_the_kv_cache_defaults_to_the_run(self):
        a = run.parse_args(["--model-dir", "m", "--out", "o", "--prompt-len", "512", "--new-tokens", "50"])
        self.assertEqual(a.max_seq_len, 562)
        a = run.parse_args(["--model-dir", "m", "--out", "o", "--max-seq-len", "1024"])
        self.assertEqual(a.max_seq_len, 1024)

    def test_prompt_and_new_tokens_must_fit_the_sequence(self):
        with self.assertRaises(SystemExit), unittest.mock.patch("sys.stderr", io.StringIO()):
            run.parse_args(["--model-dir", "m", "--out", "o", "--prompt-len", "1000", "--max-seq-len", "1024"])

    def test_plan_prediction_with_and_without_tomllib(self):
        text = '[shape]\nprompt_len = 512\n\n[prediction]\nttft_ms = 812.5\ndecode_ms_per_token = 41.0\n' \
               'streamed_bytes_per_token = 4_000_000_000\nslots = 2\n\n[arena]\nbytes = 1\n'
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "plan.toml")
            with open(p, "w") as f:
                f.write(text)
            pred = djinn.plan_prediction(p)
        self.assertEqual(pred["ttft_ms"], 812.5)
        self.assertEqual(pred["streamed_bytes_per_token"], 4_000_000_000)
        self.assertEqual(djinn._parse_toml_table(text, "prediction"), {
            "ttft_ms": 812.5, "decode_ms_per_token": 41.0, "streamed_bytes_per_token": 4_000_000_000, "slots": 2})

    def test_gpu_presets_from_device_names(self):
        self.assertEqual(djinn.gpu_preset_for("NVIDIA H100 80GB HBM3"), "h100-sxm")
        self.assertEqual(djinn.gpu_preset_for("NVIDIA H100 PCIe"), "h100-pcie")
        self.assertEqual(djinn.gpu_preset_for("NVIDIA H200"), "h200")
        self.assertIsNone(djinn.gpu_preset_for("Some GPU"))


class PromptTest(unittest.TestCase):
    def test_fake_encoder_is_repeated_and_cut_exactly(self):
        enc = lambda _dir, text: [1] + [len(w) for w in text.split()]
        ids, how = prompt.build_prompt("unused", 512, 32000, encode=enc)
        self.assertEqual(len(ids), 512)
        self.assertEqual(ids[0], 1)
        self.assertIn("repeated", how)

    def test_no_tokenizer_gives_seeded_ids_in_the_vocabulary(self):
        with tempfile.TemporaryDirectory() as d:
            a, how = prompt.build_prompt(d, 64, 100)
            b, _ = prompt.build_prompt(d, 64, 100)
        self.assertEqual(a, b)
        self.assertEqual(len(a), 64)
        self.assertTrue(all(3 <= i < 100 for i in a[1:]) and a[0] == 1)
        self.assertIn("no tokenizer", how)

    @unittest.skipUnless(has_module("tokenizers"), "the tokenizers package is not installed")
    def test_the_fixture_tokenizer_gives_512_ids_with_one_bos(self):
        ids, _ = prompt.build_prompt(FIXTURE, 512, 32000)
        self.assertEqual(len(ids), 512)
        self.assertEqual(ids[0], 1)
        self.assertEqual(ids.count(1), 1)

    def test_written_files_hold_the_same_ids(self):
        with tempfile.TemporaryDirectory() as d:
            paths = prompt.write_prompt(d, [1, 5, 7])
            with open(paths["json"]) as f:
                self.assertEqual(json.load(f), [1, 5, 7])
            with open(paths["txt"]) as f:
                self.assertEqual(f.read().split(), ["1", "5", "7"])


def ok_row(system, cap_gib, ttft, steps, pred=None, peak=None):
    r = Row(system=system, kind="djinn", status="ok", cap_bytes=cap_gib * GIB, ttft_ms=ttft,
            decode_step_ms=steps, new_tokens=len(steps) + 1, peak_device_bytes=peak)
    r.predicted = pred or {}
    return r


class ReportTest(unittest.TestCase):
    def test_derived_figures(self):
        r = ok_row("djinn", 22, 1000.0, [40.0, 50.0, 60.0], {"ttft_ms": 900.0, "decode_ms_per_token": 45.0})
        self.assertEqual(r.decode_ms_per_token, 50.0)
        self.assertEqual(r.e2e_ms, 1150.0)
        self.assertEqual(r.decode_tokens_per_s, 20.0)
        self.assertAlmostEqual(r.error_pct()["ttft_ms"], 10.0)
        self.assertAlmostEqual(r.error_pct()["decode_ms_per_token"], 10.0)
        self.assertAlmostEqual(copy_floor_ms(4 * 10**9, 50.0), 80.0)

    def test_table_keeps_failed_rows_with_their_reason(self):
        rows = [ok_row("djinn", 22, 812.0, [41.0] * 49, {"ttft_ms": 800.0, "decode_ms_per_token": 40.0}, 22 * GIB),
                Row(system="hf-gpu", kind="hf", status="oom", reason="OutOfMemoryError during load: CUDA out of memory")]
        md = report.markdown_table(rows)
        lines = md.strip().splitlines()
        self.assertEqual(len(lines), 4)
        self.assertIn("| djinn | ok | 22.00 GiB | 812 | 41.0 |", lines[2])
        self.assertIn("800 (+1%)", lines[2])
        self.assertIn("| hf-gpu | oom |", lines[3])
        self.assertIn("CUDA out of memory", lines[3])

    def test_json_and_markdown_files(self):
        with tempfile.TemporaryDirectory() as d:
            rows = [ok_row("djinn", 22, 812.0, [41.0, 43.0])]
            md = report.write_results(d, {"model": "m", "cap_bytes": 22 * GIB, "h2d_gbps": 50.0}, rows, [])
            with open(os.path.join(d, "results.json")) as f:
                data = json.load(f)
            self.assertEqual(data["systems"][0]["decode_ms_per_token"], 42.0)
            self.assertEqual(data["systems"][0]["e2e_ms"], 896.0)
            self.assertIn("50.0 GB/s", md)
            self.assertTrue(os.path.exists(os.path.join(d, "results.md")))


class SvgTest(unittest.TestCase):
    def test_chart_is_well_formed_with_axes_and_legend(self):
        sweep = [ok_row(f"djinn@{b}GiB", b, 2000.0 - 50 * b, [200.0 - 6 * b],
                        {"ttft_ms": 1900.0 - 50 * b, "decode_ms_per_token": 190.0 - 6 * b,
                         "streamed_bytes_per_token": (30 - b) * GIB}) for b in (9, 13, 17, 22, 26, 30)]
        main = [ok_row("sync", 22, 1500.0, [120.0]), ok_row("hf-offload", 22, 5000.0, [700.0])]
        main[1].system = "hf-offload"
        text = svg.budget_chart(main, sweep, 50.0)
        root = ET.fromstring(text)
        self.assertTrue(root.tag.endswith("svg"))
        texts = [t.text for t in root.iter() if t.tag.endswith("text")]
        for label in ("device-memory budget (GiB)", "decode ms/token", "TTFT ms",
                      "copy floor (streamed bytes / H2D)", "transformers + accelerate offload", "Djinn (djinn strategy)"):
            self.assertIn(label, texts)
        self.assertGreaterEqual(len([e for e in root.iter() if e.tag.endswith("polyline")]), 3)

    def test_single_point_and_empty_charts_still_draw(self):
        for main in ([ok_row("djinn", 22, 800.0, [40.0])], []):
            ET.fromstring(svg.budget_chart(main, [], None))

    def test_ticks_are_round(self):
        self.assertEqual(svg.ticks(0, 100), [0, 20, 40, 60, 80, 100])
        self.assertEqual(svg.nice_step(7), 2)


class FakeRunner:
    """Writes what each real command would, by the command's program; records every call."""

    def __init__(self, refuse_budgets=(), hf_gpu="oom", timeout=(), crash=(), profile_fails=False):
        self.calls, self.refuse, self.hf_gpu, self.timeout, self.crash = [], refuse_budgets, hf_gpu, timeout, crash
        self.profile_fails = profile_fails

    @staticmethod
    def flag(cmd, name):
        return cmd[cmd.index(name) + 1]

    def run(self, cmd, timeout_s, log_path, env=None):
        self.calls.append(cmd)
        prog = os.path.basename(cmd[1] if cmd[0].endswith("python") or cmd[0] == sys.executable else cmd[0])
        with open(log_path, "a") as log:
            log.write("$ " + " ".join(cmd) + "\n")
        if prog == "djinn-compile":
            budget = int(self.flag(cmd, "--budget"))
            if budget in self.refuse:
                return Outcome(1, False, 0.1, "djinn-compile: error: budget 9.00 GiB too small: needs at least 9.5 GiB")
            gib = budget / GIB
            with open(self.flag(cmd, "-o"), "w") as f:
                f.write(f"format_version = 1\n\n[prediction]\nttft_ms = {3000 - 60 * gib}\n"
                        f"decode_ms_per_token = {250 - 7 * gib}\nstreamed_bytes_per_token = {int(max(0, 25 - gib) * GIB)}\n")
            return Outcome(0, False, 0.1, "")
        if prog == "djinn-exec":
            plan = cmd[1]
            if any(t in plan for t in self.crash):
                return Outcome(101, False, 0.5, "thread 'main' panicked at runtime/src/replay.rs:1:1")
            with open(plan) as f:
                pred = djinn._parse_toml_table(f.read(), "prediction")
            steps = [pred["decode_ms_per_token"] * 1.1] * (int(self.flag(cmd, "--max-new-tokens")) - 1)
            with open(self.flag(cmd, "--json"), "w") as f:
                json.dump({"ttft_ms": pred["ttft_ms"] * 1.2, "decode_step_ms": steps, "peak_device_bytes": 21 * GIB}, f)
            return Outcome(0, False, 1.0, "")
        if prog == "hf_worker.py":
            mode, out = self.flag(cmd, "--mode"), self.flag(cmd, "--out")
            if mode in self.timeout:
                with open(out, "w") as f:
                    json.dump({"status": "failed", "phase": "generate"}, f)
                return Outcome(-9, True, timeout_s, "")
            if mode == "gpu" and self.hf_gpu == "oom":
                with open(out, "w") as f:
                    json.dump({"status": "oom", "phase": "load", "reason": "OutOfMemoryError during load: CUDA out of memory"}, f)
                return Outcome(3, False, 5.0, "")
            if mode == "gpu" and self.hf_gpu == "no-result":
                return Outcome(-11, False, 5.0, "Segmentation fault (core dumped)")
            with open(out, "w") as f:
                json.dump({"status": "ok", "ttft_ms": 9000.0, "decode_step_ms": [700.0] * 49, "load_s": 60.0,
                           "peak_device_bytes": 20 * GIB, "peak_method": "torch", "device_map_modules": {"0": 30, "cpu": 12}}, f)
            return Outcome(0, False, 50.0, "")
        if prog == "djinn-profile":
            if self.profile_fails:
                return Outcome(1, False, 3.0, "djinn-profile: error: no CUDA device")
            with open(self.flag(cmd, "-o"), "w") as f:
                f.write('name = "measured"\nh2d_gbps = 55.0\n')
            return Outcome(0, False, 30.0, "")
        if prog == "h2d_worker.py":
            with open(self.flag(cmd, "--out"), "w") as f:
                json.dump({"status": "ok", "h2d_gbps": 50.0, "gpu_name": "NVIDIA H100 80GB HBM3"}, f)
            return Outcome(0, False, 2.0, "")
        raise AssertionError(f"unexpected command {cmd}")


class OrchestrationTest(unittest.TestCase):
    def harness(self, d, runner, extra=()):
        model = os.path.join(d, "model")
        os.makedirs(model)
        with open(os.path.join(model, "config.json"), "w") as f:
            json.dump({"vocab_size": 32000}, f)
        args = run.parse_args(["--model-dir", model, "--out", os.path.join(d, "out"), "--bin", "/bins", *extra])
        os.makedirs(args.out, exist_ok=True)
        return run.Harness(args, runner, echo=lambda *_: None), args

    def test_a_full_run_with_failures_writes_every_row(self):
        with tempfile.TemporaryDirectory() as d:
            runner = FakeRunner(refuse_budgets=(9 * GIB,), crash=("stream-all",))
            h, args = self.harness(d, runner, ["--sweep"])
            md = h.run()
            with open(os.path.join(args.out, "results.json")) as f:
                data = json.load(f)
            by = {r["system"]: r for r in data["systems"]}
            self.assertEqual(list(by), ["djinn", "copy-floor", "sync", "stream-all", "hf-offload", "hf-gpu"])
            self.assertEqual(by["djinn"]["status"], "ok")
            self.assertAlmostEqual(by["djinn"]["error_pct"]["ttft_ms"], 100 * (1 - 1 / 1.2))
            self.assertEqual(by["stream-all"]["status"], "failed")
            self.assertIn("panicked", by["stream-all"]["reason"])
            self.assertEqual(by["hf-gpu"]["status"], "oom")
            self.assertEqual(by["hf-offload"]["decode_ms_per_token"], 700.0)
            # 25 - 22 = 3 GiB streamed per token at 50 GB/s.
            self.assertAlmostEqual(by["copy-floor"]["decode_ms_per_token"], 3 * GIB / 50e9 * 1e3)
            sweep = {r["system"]: r for r in data["sweep"]}
            self.assertEqual(sweep["djinn@9GiB"]["status"], "failed")
            self.assertIn("too small", sweep["djinn@9GiB"]["reason"])
            self.assertEqual(sweep["djinn@30GiB"]["status"], "ok")
            self.assertEqual(data["meta"]["gpu_preset"], "h100-sxm")
            self.assertIn("| hf-gpu | oom |", md)
            ET.parse(os.path.join(args.out, "budget.svg"))
            # Every Djinn command ran under the same cap and with the exact prompt file.
            execs = [c for c in runner.calls if c[0].endswith("djinn-exec")]
            self.assertTrue(all("--enforce-budget" in c for c in execs))
            self.assertTrue(all(c[c.index("--prompt-ids") + 1].endswith("prompt_ids.txt") for c in execs))
            with open(os.path.join(args.out, "prompt_ids.txt")) as f:
                self.assertEqual(len(f.read().split()), 512)

    def test_timeouts_and_lost_workers_are_reported(self):
        with tempfile.TemporaryDirectory() as d:
            runner = FakeRunner(timeout=("offload",), hf_gpu="no-result")
            h, args = self.harness(d, runner, ["--only", "hf-offload,hf-gpu"])
            h.run()
            rows = {r.system: r for r in h.main_rows}
            self.assertEqual(rows["hf-offload"].status, "timeout")
            self.assertIn("during generate", rows["hf-offload"].reason)
            self.assertEqual(rows["hf-gpu"].status, "failed")
            self.assertIn("Segmentation fault", rows["hf-gpu"].reason)

    def test_a_harness_error_fails_one_system_only(self):
        with tempfile.TemporaryDirectory() as d:
            h, _ = self.harness(d, FakeRunner(), ["--only", "djinn,hf-offload"])
            with unittest.mock.patch.object(systems, "run_djinn", side_effect=KeyError("boom")):
                h.run()
            self.assertEqual([(r.system, r.status) for r in h.main_rows],
                             [("djinn", "failed"), ("copy-floor", "skipped"), ("hf-offload", "ok")])
            self.assertIn("harness error", h.main_rows[0].reason)

    def test_a_run_in_two_parts_merges_into_one_table(self):
        with tempfile.TemporaryDirectory() as d:
            h, args = self.harness(d, FakeRunner(), ["--only", "djinn,hf-offload"])
            h.run()
            first = os.path.join(args.out, "results.json")
            args2 = run.parse_args(["--model-dir", args.model_dir, "--out", os.path.join(d, "out2"), "--bin", "/bins",
                                    "--only", "sweep", "--sweep-budgets", "13,26", "--merge-from", first])
            os.makedirs(args2.out)
            md = run.Harness(args2, FakeRunner(), echo=lambda *_: None).run()
            with open(os.path.join(args2.out, "results.json")) as f:
                data = json.load(f)
            self.assertEqual([r["system"] for r in data["systems"]], ["djinn", "copy-floor", "hf-offload"])
            self.assertEqual([r["system"] for r in data["sweep"]], ["djinn@13GiB", "djinn@26GiB"])
            self.assertEqual(data["systems"][0]["decode_ms_per_token"], data["systems"][0]["decode_step_ms"][0])
            self.assertIn("| hf-offload | ok |", md)
            with open(os.path.join(args2.out, "budget.svg")) as f:
                self.assertIn("transformers + accelerate offload", f.read())

    def test_gpu_measure_profiles_first_and_compiles_every_plan_from_it(self):
        with tempfile.TemporaryDirectory() as d:
            runner = FakeRunner()
            h, args = self.harness(d, runner, ["--only", "djinn,sync", "--gpu", "measure"])
            h.run()
            progs = [os.path.basename(c[0]) for c in runner.calls]
            self.assertLess(progs.index("djinn-profile"), progs.index("djinn-compile"))
            profile = os.path.join(args.out, "profile.toml")
            prof = runner.calls[progs.index("djinn-profile")]
            self.assertEqual((prof[prof.index("--model") + 1], prof[prof.index("-o") + 1]), (args.model_dir, profile))
            compiles = [c for c in runner.calls if c[0].endswith("djinn-compile")]
            self.assertEqual({c[c.index("--gpu") + 1] for c in compiles}, {profile})
            self.assertEqual(h.meta["gpu_preset"], profile)
            self.assertEqual(h.meta["profile"]["path"], profile)

    def test_gpu_measure_falls_back_to_the_preset_with_a_note(self):
        with tempfile.TemporaryDirectory() as d:
            runner = FakeRunner(profile_fails=True)
            h, _ = self.harness(d, runner, ["--only", "djinn", "--gpu", "measure"])
            h.run()
            compiles = [c for c in runner.calls if c[0].endswith("djinn-compile")]
            self.assertEqual({c[c.index("--gpu") + 1] for c in compiles}, {"h100-sxm"})
            self.assertTrue(any("djinn-profile failed (exit 1: djinn-profile: error: no CUDA device" in n
                                for n in h.meta["notes"]), h.meta["notes"])
            self.assertNotIn("profile", h.meta)

    def test_a_deadline_skips_what_cannot_start_in_time(self):
        with tempfile.TemporaryDirectory() as d:
            h, _ = self.harness(d, FakeRunner(), ["--only", "djinn,hf-offload", "--deadline", "20"])
            h.run()
            self.assertEqual([(r.system, r.status) for r in h.main_rows],
                             [("djinn", "skipped"), ("copy-floor", "skipped"), ("hf-offload", "skipped")])
            self.assertIn("--deadline", h.main_rows[0].reason)

    def test_dry_run_prints_commands_and_runs_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out = io.StringIO()
            with unittest.mock.patch("sys.stdout", out):
                rc = run.main(["--model-dir", os.path.join(d, "absent"), "--out", os.path.join(d, "o"),
                               "--bin", "/bins", "--dry-run", "--sweep", "--sweep-budgets", "13,26"])
            self.assertEqual(rc, 0)
            text = out.getvalue()
            self.assertIn("[dry run] /bins/djinn-synth --model llama2-13b", text)
            self.assertIn("--strategy stream-all", text)
            self.assertIn("--budget 13958643712", text)
            self.assertIn("hf_worker.py --model-dir", text)
            self.assertFalse(os.path.exists(os.path.join(d, "absent")))


class SubprocessRunnerTest(unittest.TestCase):
    def test_a_hung_command_is_killed_and_reported(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "x.log")
            o = SubprocessRunner(echo=lambda *_: None).run(["sleep", "30"], 0.5, log)
            self.assertTrue(o.timed_out)
            self.assertLess(o.wall_s, 10)
            self.assertIn("killed after", o.tail)

    def test_output_and_exit_code_are_kept(self):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "x.log")
            o = SubprocessRunner(echo=lambda *_: None).run(["sh", "-c", "echo hello; exit 4"], 10, log)
            self.assertEqual((o.rc, o.timed_out), (4, False))
            self.assertIn("hello", o.tail)

    def test_a_missing_program_is_an_outcome_not_an_exception(self):
        with tempfile.TemporaryDirectory() as d:
            o = SubprocessRunner(echo=lambda *_: None).run(["/no/such/djinn-exec"], 10, os.path.join(d, "x.log"))
            self.assertEqual(o.rc, 127)
            self.assertIn("cannot start", o.tail)


@unittest.skipUnless(has_module("torch") and has_module("transformers") and has_module("accelerate"),
                     "torch, transformers and accelerate are not installed (see bench/README.md)")
class HfWorkerCpuTest(unittest.TestCase):
    """The transformers path for real, on the CPU, on the tiny fixture: the timed greedy loop with the
    KV cache must give the fixture's float32 reference tokens."""

    def test_offload_path_reproduces_the_reference_greedy_tokens(self):
        with open(os.path.join(ROOT, "tests", "fixtures", "reference.json")) as f:
            ref = json.load(f)["tiny-llama-mha"]["prompts"][2]
        with tempfile.TemporaryDirectory() as d:
            ids_path, out = os.path.join(d, "ids.json"), os.path.join(d, "r.json")
            with open(ids_path, "w") as f:
                json.dump(ref["input_ids"], f)
            proc = subprocess.run(
                [sys.executable, os.path.join(HERE, "djbench", "hf_worker.py"), "--model-dir", FIXTURE,
                 "--mode", "offload", "--cap-bytes", str(GIB), "--prompt-ids", ids_path, "--new-tokens", "20",
                 "--dtype", "f32", "--cpu", "--out", out], capture_output=True, text=True, timeout=600)
            with open(out) as f:
                result = json.load(f)
        self.assertEqual(result["status"], "ok", result.get("reason", "") + proc.stderr[-2000:])
        self.assertEqual(result["tokens"], ref["greedy_ids"][:20])
        self.assertEqual(len(result["decode_step_ms"]), 19)
        self.assertGreater(result["ttft_ms"], 0)


if __name__ == "__main__":
    unittest.main()
