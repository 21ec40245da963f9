"""Running one command of the benchmark: for real, as a dry run, or (in tests) faked.

Every system runs in its own process, with its output in its own log file and
a wall-clock limit; a command that hangs is killed with its whole process
group, so a stuck CUDA context cannot outlive its system.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass


@dataclass
class Outcome:
    rc: int
    timed_out: bool
    wall_s: float
    # The last lines of the command's output, for the reason of a failure.
    tail: str
    dry_run: bool = False


def tail_of(path: str, n_chars: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n_chars))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


class SubprocessRunner:
    """Runs commands for real, output to `log_path`, killed after `timeout_s`."""

    def __init__(self, echo=print):
        self.echo = echo

    def run(self, cmd: list, timeout_s: float, log_path: str, env=None) -> Outcome:
        self.echo("$ " + shlex.join(cmd))
        t0 = time.monotonic()
        with open(log_path, "ab") as log:
            log.write(("$ " + shlex.join(cmd) + "\n").encode())
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
            except OSError as e:
                log.write(f"cannot start: {e}\n".encode())
                return Outcome(rc=127, timed_out=False, wall_s=0.0, tail=f"cannot start {cmd[0]}: {e}")
            try:
                rc = proc.wait(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                timed_out = True
                log.write(f"\nkilled after {timeout_s:.0f} s\n".encode())
        return Outcome(rc=rc, timed_out=timed_out, wall_s=time.monotonic() - t0, tail=tail_of(log_path))


class DryRunner:
    """Prints what would run; runs nothing."""

    def __init__(self, echo=print):
        self.echo = echo
        self.commands = []

    def run(self, cmd: list, timeout_s: float, log_path: str, env=None) -> Outcome:
        self.commands.append(cmd)
        self.echo("[dry run] " + shlex.join(cmd))
        return Outcome(rc=0, timed_out=False, wall_s=0.0, tail="", dry_run=True)
