"""hubwizard side by side with what an admin would use instead, on the lab: one command.

    python bench/run.py [--quick] [--only NAME] [--runs N]

Brings up a lab (1 hub + 3 nodes), converges it with `hubwizard apply --yes` (timed per
step: the full apply from fresh machines), then on the converged lab times, interleaved
round by round so a change of machine load hits every contender alike:
  verify        `hubwizard verify`; the same shell checks through Ansible (defaults, and
                pipelining + forks tuned) and through a sequential `ssh host cmd` loop;
  reapply       a converged `hubwizard apply --yes` with 1+3 nodes, and again on a 1+6 lab;
  monitor       one refresh with 100 services / 300 tasks (bench/bench_monitor.py);
  startup       `hubwizard --help` and the TUI's first painted screen.
Writes bench/RESULTS.md and bench/results.json; every lab it brought up is taken down at the
end, even on failure or Ctrl-C. Benchmarks are measured, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
VENV = BENCH / ".venv"
sys.path.insert(0, str(BENCH))

import startup  # noqa: E402
import verifyplan  # noqa: E402

BENCHMARKS = ("startup", "full-apply", "verify", "reapply", "monitor")
TARGETS = {  # ratio or seconds, and what the issue asks
    "verify/ansible": (0.25, "hubwizard verify at most 0.25x Ansible with its defaults"),
    "verify/ssh": (0.5, "hubwizard verify at most 0.5x the ssh loop"),
    "reapply 6/3": (1.4, "converged re-apply 1+6 nodes at most 1.4x the 1+3 time"),
    "monitor": (0.150, "monitor refresh (fetch + render, 100 services, 300 tasks) under 150 ms"),
    "help": (0.3, "`hubwizard --help` under 0.3 s"),
}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ results


class Results:
    """Every measurement of this run; saved after each benchmark so a crash keeps what was done."""

    def __init__(self, runs: int, quick: bool) -> None:
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.data: dict[str, Any] = {"run_id": self.run_id, "started": _now(), "runs": runs, "quick": quick,
                                     "machine": machine_info(), "load_start": os.getloadavg(),
                                     "benchmarks": {}, "notes": [], "apply": {}, "errors": []}

    def add(self, name: str, times: list[float], **info: Any) -> None:
        entry = {"run_id": self.run_id, "times": [round(t, 4) for t in times], **summary(times), **info}
        self.data["benchmarks"][name] = entry
        med = entry.get("median")
        say(f"  {name}: median {med:.3f} s (n={entry['n']})" if med is not None else f"  {name}: no figure")
        self.save()

    def note(self, text: str) -> None:
        say(f"  note: {text}")
        self.data["notes"].append(text)

    def merge_previous(self, path: Path, keep: set[str]) -> None:
        """--only: keep the other benchmarks of the last full run (marked with their run id)."""
        if not path.exists():
            return
        old = json.loads(path.read_text())
        for name, entry in old.get("benchmarks", {}).items():
            if _group(name) not in keep:
                self.data["benchmarks"].setdefault(name, entry)
        if "full-apply" not in keep and "reapply" not in keep:
            self.data["apply"] = old.get("apply", {})
        if "verify" not in keep and "verify_plan" in old:
            self.data["verify_plan"] = old["verify_plan"]
        self.data["lab_up_seconds"] = old.get("lab_up_seconds", {})
        self.data["notes"] = [n if n.startswith("(run ") else f"(run {old.get('run_id')}) {n}"
                              for n in old.get("notes", [])]
        self.data["earlier_run"] = {k: old.get(k) for k in ("run_id", "started", "finished", "load_start", "runs")}

    def save(self) -> None:
        self.data["finished"] = _now()
        self.data["load_end"] = os.getloadavg()
        (BENCH / "results.json").write_text(json.dumps(self.data, indent=2) + "\n")
        (BENCH / "RESULTS.md").write_text(keep_scale_section(markdown(self.data)))


def keep_scale_section(text: str) -> str:
    """RESULTS.md's scale section belongs to bench_scale.py: carry it over when run.py rewrites the file."""
    begin, end = "<!-- bench_scale.py: begin -->", "<!-- bench_scale.py: end -->"
    old = (BENCH / "RESULTS.md").read_text() if (BENCH / "RESULTS.md").exists() else ""
    if begin not in old or end not in old:
        return text
    block = begin + old.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    return text.rstrip("\n") + "\n\n" + block


def _group(name: str) -> str:
    return name.split(":")[0]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def summary(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(times), "median": round(statistics.median(times), 4), "min": round(min(times), 4),
            "max": round(max(times), 4)}


def _version(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (res.stdout or res.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not available"


def machine_info() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_client": _version(["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker_engine": _version(["docker", "version", "--format", "{{.Server.Version}}"]),
        "openssh": _version(["ssh", "-V"]),
        "ansible_core": _version([str(VENV / "bin" / "ansible-playbook"), "--version"]),
        "hyperfine": _version(["hyperfine", "--version"]),
        "tmux": _version(["tmux", "-V"]),
        "hubwizard_commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def wait_for_low_load(limit: float, max_wait: float) -> tuple[float, float, float]:
    """Other engineers run labs on this machine: wait (bounded) for the 1-minute load to drop."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()


# ------------------------------------------------------------------ processes


def hw(*args: str) -> list[str]:
    return [startup.hubwizard_exe(), *args]


def timed(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 3600,
          log: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one command; its output goes to ``log`` when given (for the post-mortem)."""
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    dt = time.perf_counter() - t0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(argv)}\n# exit {res.returncode} in {dt:.2f} s\n{res.stdout}\n{res.stderr}\n")
    return dt, res


# ------------------------------------------------------------------ the lab


class Labs:
    """The labs this run brought up; down() takes every one of them down (and nothing else)."""

    def __init__(self) -> None:
        self.up_names: list[str] = []

    def up(self, name: str, nodes: int, results: Results) -> Path:
        site = OUT / f"{name}.toml"
        self.down_one(name)  # fresh machines: a lab of the same name is never reused
        self.up_names.append(name)
        say(f"lab up --name {name} --nodes {nodes}")
        for attempt in (1, 2):  # under load a machine can miss the lab's readiness deadline: retry once
            dt, res = timed(hw("lab", "up", "--name", name, "--nodes", str(nodes), "-o", str(site)),
                            log=OUT / f"lab-{name}.log", timeout=1800)
            if res.returncode == 0:
                break
            results.note(f"lab up {name} attempt {attempt} failed: {res.stderr.strip()[-300:]}")
            self.down_one(name)
        if res.returncode != 0:
            raise RuntimeError(f"lab up {name} failed (exit {res.returncode}): {res.stderr.strip()[-500:]}")
        results.data.setdefault("lab_up_seconds", {})[name] = round(dt, 1)
        return site

    def down_one(self, name: str) -> None:
        subprocess.run(hw("lab", "down", "--name", name), capture_output=True, text=True, cwd=ROOT)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(OUT / ".hubwizard" / name)  # the journal of a removed lab

    def down(self) -> None:
        for name in reversed(self.up_names):
            say(f"lab down --name {name}")
            self.down_one(name)
        self.up_names.clear()


# ------------------------------------------------------------------ full apply, per step


def full_apply(site: Path, label: str, results: Results, attempts: int = 2,
               record: bool = True) -> tuple[list[str], bool]:
    """`hubwizard apply --yes` from fresh machines; time split per step from the moment each
    step's header line appears. Returns the ids of the steps that converged, and whether all
    did. ``record=False``:
    only to get a converged lab (--only monitor|verify), the earlier figures are kept."""
    log = OUT / f"apply-{label}.log"
    log.unlink(missing_ok=True)
    steps: list[dict[str, Any]] = []
    converged: list[str] = []
    total = 0.0
    code = 1
    for attempt in range(1, attempts + 1):
        say(f"full apply on {label} (attempt {attempt})")
        t0 = time.perf_counter()
        proc = subprocess.Popen(hw("apply", "-c", str(site), "--yes"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        marks: list[tuple[str, float]] = []
        failed: str | None = None
        current: str | None = None
        assert proc.stdout is not None
        with log.open("a") as fh:
            for line in proc.stdout:
                fh.write(line)
                m = re.match(r"^== ([\w.-]+): ", line)
                if m:
                    current = m.group(1)
                    marks.append((current, time.perf_counter() - t0))
                elif current and re.match(r"^\s+(FAILED|UNREACHABLE)\s", line):
                    failed = current
        code = proc.wait()
        dt = time.perf_counter() - t0
        total += dt
        ends = [t for _, t in marks[1:]] + [dt]
        for (sid, start), end in zip(marks, ends, strict=True):
            steps.append({"attempt": attempt, "step": sid, "seconds": round(end - start, 2),
                          "status": "failed" if sid == failed else "ok"})
        converged = [sid for sid, _ in marks if sid != failed]
        if code == 0:
            break
        results.note(f"full apply on {label}, attempt {attempt}: exit {code}, failed at step {failed!r} "
                     f"(log: bench/out/{log.name})")
    outcome = {"exit_code": code, "seconds": round(total, 1), "steps": steps,
               "converged_steps": converged, "all_converged": code == 0}
    if not record:
        results.note(f"lab {label} converged again for this run's benchmarks in {total:.0f} s (exit {code}); "
                     "the full-apply figures above are from the run named there")
        return converged, code == 0
    results.data["apply"][label] = outcome
    results.add(f"full-apply:{label}", [total], exit_code=code, attempts=attempt)
    return converged, code == 0


# ------------------------------------------------------------------ verify three ways


def ensure_ansible() -> Path:
    """ansible-core from PyPI in bench/.venv (never in the project's environment)."""
    exe = VENV / "bin" / "ansible-playbook"
    if not exe.exists():
        say("installing ansible-core into bench/.venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "ansible-core"], check=True)
    return exe


def build_plan(site: Path, steps: list[str] | None) -> tuple[verifyplan.VerifyPlan, Any]:
    from hubwizard.core.events import discard
    from hubwizard.session import open_site

    session = open_site(site, prompt=None)
    engine = session.engine(discard)
    try:
        chosen = [s for s in session.steps if steps is None or s.id in steps]
        return verifyplan.build(engine, chosen), session.site
    finally:
        engine.conns.close()


def write_ansible(plan: verifyplan.VerifyPlan, site: Any) -> dict[str, Path]:
    d = OUT / "ansible"
    d.mkdir(parents=True, exist_ok=True)
    (d / "inventory.yml").write_text(verifyplan.inventory_yaml(site, plan.hosts()))
    (d / "verify.yml").write_text(verifyplan.playbook_yaml(plan))
    (d / "default.cfg").write_text(verifyplan.ansible_cfg(pipelining=False, forks=None))
    (d / "tuned.cfg").write_text(verifyplan.ansible_cfg(pipelining=True, forks=max(5, len(plan.hosts()))))
    return {"dir": d, "inventory": d / "inventory.yml", "playbook": d / "verify.yml"}


def run_ansible(files: dict[str, Path], cfg: str, log: Path) -> tuple[float, int, str]:
    """One cold playbook run: a fresh ControlPath dir, so no SSH master survives from the last run."""
    with tempfile.TemporaryDirectory(prefix="hwbench-cp-") as cp:
        env = {**os.environ, "ANSIBLE_CONFIG": str(files["dir"] / cfg), "ANSIBLE_SSH_CONTROL_PATH_DIR": cp,
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": os.path.join(cp, "tmp")}
        dt, res = timed([str(VENV / "bin" / "ansible-playbook"), "-i", str(files["inventory"]),
                         str(files["playbook"])], env=env, log=log)
    recap = re.findall(r"^(\S+)\s+:\s+ok=(\d+).*?failed=(\d+).*?ignored=(\d+)", res.stdout, re.M)
    bad = sum(int(f) + int(i) for _, _, f, i in recap)
    return dt, res.returncode, f"{bad} failed checks" if bad else "all passed"


def run_ssh_loop(plan: verifyplan.VerifyPlan, site: Any) -> tuple[float, int]:
    """Each check as `ssh host cmd`, one after the other, as the manual tutorial does it."""
    failures = 0
    t0 = time.perf_counter()
    for c in plan.checks:
        res = subprocess.run(verifyplan.ssh_argv(site, c.host, c.command, c.sudo), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=c.timeout or 600)
        failures += res.returncode != 0
    return time.perf_counter() - t0, failures


def bench_verify(site: Path, converged: list[str] | None, runs: int, results: Results) -> None:
    """The same checks three ways, interleaved per round."""
    ensure_ansible()
    plan, site_cfg = build_plan(site, converged)
    files = write_ansible(plan, site_cfg)
    kinds: dict[str, int] = {}
    for c in plan.checks:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    results.data["verify_plan"] = {"checks": len(plan.checks), "by_kind": kinds, "hosts": plan.hosts(),
                                   "steps": plan.steps, "left_out": plan.left_out}
    say(f"verify plan: {len(plan.checks)} shell checks on {len(plan.hosts())} hosts; left out {plan.left_out}")
    steps_arg = ["--steps", ",".join(converged)] if converged else []
    log = OUT / "verify.log"
    log.unlink(missing_ok=True)
    full_cmd = hw("verify", "-c", str(site)) if not converged else \
        [sys.executable, str(BENCH / "subset.py"), "verify", str(site), *steps_arg]
    shell_cmd = [sys.executable, str(BENCH / "subset.py"), "verify", str(site), "--shell-only", *steps_arg]
    contenders: dict[str, Callable[[], tuple[float, str]]] = {
        "verify:hubwizard (all checks)": lambda: _proc(full_cmd, log),
        "verify:hubwizard (shell checks)": lambda: _proc(shell_cmd, log),
        "verify:ansible defaults": lambda: _ans(files, "default.cfg", log),
        "verify:ansible pipelining+forks": lambda: _ans(files, "tuned.cfg", log),
        "verify:ssh loop": lambda: _ssh(plan, site_cfg),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    outcome: dict[str, str] = {}
    load = wait_for_low_load(ARGS.max_load, ARGS.load_wait)
    for r in range(runs):
        say(f"verify round {r + 1}/{runs}")
        for name, fn in contenders.items():
            dt, how = fn()
            times[name].append(dt)
            outcome[name] = how
    for name in contenders:
        results.add(name, times[name], outcome=outcome[name], load=load, checks=len(plan.checks))


def _proc(argv: list[str], log: Path) -> tuple[float, str]:
    dt, res = timed(argv, log=log)
    return dt, "all passed" if res.returncode == 0 else f"exit {res.returncode}"


def _ans(files: dict[str, Path], cfg: str, log: Path) -> tuple[float, str]:
    dt, code, how = run_ansible(files, cfg, log)
    return dt, how if code == 0 else f"exit {code}, {how}"


def _ssh(plan: verifyplan.VerifyPlan, site: Any) -> tuple[float, str]:
    dt, failures = run_ssh_loop(plan, site)
    return dt, f"{failures} failed checks" if failures else "all passed"


# ------------------------------------------------------------------ converged re-apply


def bench_reapply(site: Path, label: str, converged: list[str] | None, runs: int, results: Results) -> None:
    argv = hw("apply", "-c", str(site), "--yes") if not converged else \
        [sys.executable, str(BENCH / "subset.py"), "apply", str(site), "--steps", ",".join(converged)]
    load = wait_for_low_load(ARGS.max_load, ARGS.load_wait)
    times, how = [], "ok"
    for _ in range(runs):
        dt, res = timed(argv, log=OUT / f"reapply-{label}.log")
        times.append(dt)
        if res.returncode != 0:
            how = f"exit {res.returncode}"
    results.add(f"reapply:{label}", times, outcome=how, load=load,
                steps="all" if not converged else len(converged))


# ------------------------------------------------------------------ monitor and start-up


def bench_monitor(site: Path, runs: int, results: Results) -> None:
    """bench/bench_monitor.py is the TUI engineer's: called (it creates 100 services of 3 replicas,
    held pending, on the lab's swarm, then times fetch + render), never rewritten here."""
    script = BENCH / "bench_monitor.py"
    if not script.exists():
        results.note("monitor: bench/bench_monitor.py does not exist yet: not measured")
        return
    rounds = max(10, runs * 2)
    load = wait_for_low_load(ARGS.max_load, ARGS.load_wait)
    _, res = timed([sys.executable, str(script), "-c", str(site), "--rounds", str(rounds)],
                   log=OUT / "monitor.log", timeout=2400)
    timed([sys.executable, str(script), "-c", str(site), "--cleanup"], log=OUT / "monitor.log")
    figures = dict(re.findall(r"^\s+(.+?)\s+median\s+([\d.]+) ms", res.stdout, re.M))
    calls = re.search(r"Docker API calls per refresh: (\[.*\])", res.stdout)
    swarm = re.search(r"swarm: (.*?);", res.stdout)
    if not figures:
        results.note(f"monitor: bench/bench_monitor.py gave no figures (exit {res.returncode}); see bench/out/monitor.log")
        return
    for label, value in figures.items():
        if "CPU time" in label:
            continue
        name = "monitor:refresh 100 services / 300 tasks" if label.startswith("refresh (fetch") else f"monitor:{label}"
        med = float(value) / 1000
        entry = {"run_id": results.run_id, "times": [], "n": rounds, "median": med, "min": None, "max": None,
                 "load": load, "outcome": f"API calls per refresh {calls.group(1) if calls else '?'}; "
                 f"{swarm.group(1) if swarm else ''}; median of {rounds} rounds as bench_monitor.py reports it"}
        results.data["benchmarks"][name] = entry
        say(f"  {name}: median {med * 1000:.1f} ms")
    results.save()


def bench_startup(site: Path | None, runs: int, results: Results) -> None:
    load = wait_for_low_load(ARGS.max_load, ARGS.load_wait)
    n = max(runs * 4, 10) if not ARGS.quick else 10
    t, how = startup.time_command(hw("--help"), n)
    results.add("startup:hubwizard --help", t, tool=how, load=load)
    t, how = startup.time_command([sys.executable, "-c", "pass"], n)
    results.add("startup:python -c pass (baseline)", t, tool=how, load=load)
    t, how = startup.time_command([sys.executable, "-c", "import hubwizard.cli.main"], n)
    results.add("startup:import hubwizard.cli.main (baseline)", t, tool=how, load=load)
    if shutil.which("hubwizard") and shutil.which("hubwizard") != startup.hubwizard_exe():
        t, how = startup.time_command([shutil.which("hubwizard") or "", "--help"], n)
        results.add("startup:hubwizard --help via the PATH shim", t, tool=how, load=load)
    results.add("startup:TUI first paint (tmux)", startup.tui_first_paint_tmux(str(site) if site else None, runs),
                load=load)
    results.add("startup:TUI first paint (headless run_test)",
                startup.tui_first_paint_headless(str(site) if site else None, runs), load=load)


# ------------------------------------------------------------------ the report


def _med(data: dict[str, Any], name: str) -> float | None:
    e = data["benchmarks"].get(name)
    return e.get("median") if e else None


def ratios(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the measured value, and whether it was met (ratios only within one run)."""
    b = data["benchmarks"]
    hwv = "verify:hubwizard (shell checks)"
    pairs = {
        "verify/ansible": (hwv, "verify:ansible defaults"),
        "verify/ssh": (hwv, "verify:ssh loop"),
        "reapply 6/3": ("reapply:1+6", "reapply:1+3"),
    }
    out = []
    for key, (num, den) in pairs.items():
        a, c = _med(data, num), _med(data, den)
        same = b.get(num, {}).get("run_id") == b.get(den, {}).get("run_id")
        value = round(a / c, 3) if a and c else None
        out.append({"target": key, "value": value, "limit": TARGETS[key][0], "what": TARGETS[key][1],
                    "met": value is not None and value <= TARGETS[key][0], "same_run": same})
    for key, name in (("monitor", "monitor:refresh 100 services / 300 tasks"), ("help", "startup:hubwizard --help")):
        v = _med(data, name)
        out.append({"target": key, "value": v, "limit": TARGETS[key][0], "what": TARGETS[key][1],
                    "met": v is not None and v < TARGETS[key][0], "same_run": True})
    return out


def _round_ratios(data: dict[str, Any]) -> list[str]:
    """The contenders ran interleaved, so each round's ratio compares runs under the same load."""
    b = data["benchmarks"]
    mine = b.get("verify:hubwizard (shell checks)", {}).get("times", [])
    out = []
    for other in ("verify:ansible defaults", "verify:ansible pipelining+forks", "verify:ssh loop"):
        theirs = b.get(other, {}).get("times", [])
        if mine and len(theirs) == len(mine):
            per = [f"{a / c:.2f}x" for a, c in zip(mine, theirs, strict=True)]
            out.append(f"- per round, hubwizard (shell checks) / {other.split(':', 1)[1]}: {', '.join(per)}")
    return ["", *out] if out else []


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    la = data["load_start"]
    lines = [
        "# Benchmarks: hubwizard against what an admin would use instead",
        "",
        f"Generated by `python bench/run.py{' --quick' if data['quick'] else ''}` (run {data['run_id']}); "
        "method and analysis in [README.md](README.md). Do not edit by hand.",
        "",
        "## Machine",
        "",
        f"- date: {data['started']} to {data.get('finished', '?')}",
        f"- {m['nproc']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}",
        f"- Docker client {m['docker_client']}, engine {m['docker_engine']}; {m['openssh']}; {m['ansible_core']}",
        f"- {m['hyperfine']}; {m['tmux']}; hubwizard at commit {m['hubwizard_commit']}",
        f"- load average at start {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}, at end "
        + " / ".join(f"{x:.2f}" for x in data.get("load_end", (0, 0, 0)))
        + " (1/5/15 min; other engineers' labs share these 2 cores)",
        f"- runs per benchmark: {data['runs']}",
        *([f"- rows marked (run {data['earlier_run']['run_id']}) come from the earlier full run, started "
           f"{data['earlier_run']['started']}, load at its start "
           + " / ".join(f"{x:.2f}" for x in data["earlier_run"]["load_start"])] if data.get("earlier_run") else []),
        "",
        "## Targets",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
    ]
    for r in ratios(data):
        is_ratio = "/" in r["target"]
        val = "-" if r["value"] is None else (f"{r['value']:.2f}x" if is_ratio else _fmt(r["value"]))
        lim = f"{r['limit']}x" if is_ratio else _fmt(r["limit"])
        met = "not measured" if r["value"] is None else ("yes" if r["met"] else "**no**")
        if not r["same_run"]:
            met += " (figures from different runs)"
        lines.append(f"| {r['what']} | {val} | {lim} | {met} |")
    lines += ["", "## Every benchmark", "", "| benchmark | median | min - max | n | load (1 min) at start | outcome |",
              "|---|---|---|---|---|---|"]
    for name, e in data["benchmarks"].items():
        load = e.get("load")
        lo = f"{load[0]:.1f}" if load else "-"
        rng = f"{_fmt(e['min'])} - {_fmt(e['max'])}" if e.get("n") else "-"
        other = "" if e.get("run_id") == data["run_id"] else f" (run {e.get('run_id')})"
        lines.append(f"| {name}{other} | {_fmt(e.get('median'))} | {rng} | {e.get('n', 0)} | {lo} | "
                     f"{e.get('outcome', e.get('tool', ''))} |")
    vp = data.get("verify_plan")
    if vp:
        lines += ["", "## Verify: what the three contenders run", "",
                  f"{vp['checks']} shell checks ({', '.join(f'{n} {k}' for k, n in vp['by_kind'].items())}) "
                  f"on {len(vp['hosts'])} hosts, from steps {', '.join(vp['steps'])}. Left out of all three: "
                  f"{sum(n for k, n in vp['left_out'].items() if k.startswith('call:'))} call items "
                  "(counted per item and host), and items whose `when:` is false here:", ""]
        lines += [f"- {n} x {why}" for why, n in sorted(vp["left_out"].items())]
        lines += ["", "`hubwizard (all checks)` also runs the call items; the ratios use `hubwizard (shell checks)`, "
                  "the same commands as Ansible and the ssh loop."]
        lines += _round_ratios(data)
    for label, a in data.get("apply", {}).items():
        lines += ["", f"## Full apply from fresh machines, {label}: {_fmt(a['seconds'])}, exit {a['exit_code']}", "",
                  "| attempt | step | seconds | status |", "|---|---|---|---|"]
        lines += [f"| {s['attempt']} | {s['step']} | {s['seconds']:.1f} | {s['status']} |" for s in a["steps"]]
        if not a["all_converged"]:
            lines += ["", f"Not every step converged: verify and re-apply on this lab use the steps that did "
                      f"({', '.join(a['converged_steps'])})."]
    if data.get("lab_up_seconds"):
        lines += ["", "Lab bring-up (not a benchmark, for scale): "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in data["lab_up_seconds"].items())]
    if data["notes"] or data["errors"]:
        lines += ["", "## Notes from this run", ""] + [f"- {n}" for n in data["notes"] + data["errors"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main


ARGS: argparse.Namespace


def _names(text: str) -> set[str]:
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = names - set(BENCHMARKS)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    global ARGS
    p = argparse.ArgumentParser(description="hubwizard benchmarks on the lab (see bench/README.md)")
    p.add_argument("--quick", action="store_true", help="2 runs per benchmark instead of 5")
    p.add_argument("--only", type=_names, metavar="NAME[,NAME]",
                   help=f"run only these ({', '.join(BENCHMARKS)}); the others are kept from results.json")
    p.add_argument("--runs", type=int, help="runs per benchmark (default 5, --quick 2)")
    p.add_argument("--max-load", type=float, default=float(os.cpu_count() or 2) * 2,
                   help="wait for the 1-minute load average to drop below this before each benchmark")
    p.add_argument("--load-wait", type=float, default=90.0, help="seconds to wait for it at most")
    p.add_argument("--keep-labs", action="store_true", help="leave the labs up (for debugging)")
    p.add_argument("--report", action="store_true", help="only write RESULTS.md again from results.json")
    ARGS = p.parse_args(argv)
    if ARGS.report:
        data = json.loads((BENCH / "results.json").read_text())
        (BENCH / "RESULTS.md").write_text(keep_scale_section(markdown(data)))
        return 0
    runs = ARGS.runs or (2 if ARGS.quick else 5)
    OUT.mkdir(parents=True, exist_ok=True)
    results = Results(runs, ARGS.quick)
    want = set(BENCHMARKS) if not ARGS.only else ARGS.only
    if ARGS.only:
        results.merge_previous(BENCH / "results.json", want)
    labs = Labs()
    try:
        if "startup" in want:
            say("startup: --help and TUI first paint")
            bench_startup(None, runs, results)
        needs_lab = want & {"full-apply", "verify", "reapply", "monitor"}
        if needs_lab:
            site3 = labs.up("bench3", 3, results)
            converged3, ok3 = full_apply(site3, "1+3", results, record="full-apply" in want or "reapply" in want)
            subset3 = None if ok3 else converged3
            if "verify" in want:
                bench_verify(site3, subset3, runs, results)
            if "reapply" in want:
                bench_reapply(site3, "1+3", subset3, runs, results)
            if "monitor" in want:  # last on this lab: it leaves 100 services behind until --cleanup
                bench_monitor(site3, runs, results)
            labs.down()
            if "reapply" in want or "full-apply" in want:
                site6 = labs.up("bench6", 6, results)
                converged6, ok6 = full_apply(site6, "1+6", results)
                # compare like for like: the same steps on both sizes
                subset6 = None if ok3 and ok6 else [s for s in (converged6 or []) if s in (converged3 or converged6)]
                if subset3 != subset6:
                    results.note("1+3 and 1+6 converged different steps: the re-apply ratio compares unequal work")
                if "reapply" in want:
                    bench_reapply(site6, "1+6", subset6, runs, results)
                labs.down()
    except BaseException as exc:  # noqa: BLE001 - record, tear down, and still write the report
        results.data["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        if not ARGS.keep_labs:
            labs.down()
        results.save()
    say(f"wrote {BENCH / 'RESULTS.md'} and {BENCH / 'results.json'}")
    return 1 if results.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
