"""Scale behind a jump host (issue 11 item 5): first apply, converged re-apply and verify at 1+N.

Each size gets its own lab (`hubwizard lab up --name scaleN --nodes N --jump --user admin
--sudo-password --ssh-port 2222`), fresh machines, taken down at the end even on failure:

    python bench/bench_scale.py --nodes 2 4 8            # 1 first apply, 3 re-applies, 3 verifies each
    python bench/bench_scale.py --nodes 8 --streak 5     # and 5 verifies in a row at the largest size
    python bench/bench_scale.py --nodes 4 --hub-max-sessions 4   # the hub's sshd allows 4 sessions
    python bench/bench_scale.py --report                 # rewrite the RESULTS.md section from scale.json

Every run is recorded (seconds, exit code, load average at its start, the FAILED lines and the
output tail of a failed run) in bench/scale.json, merged by size, so sizes can be measured in
separate sessions when the machine is free. The first apply is split into steps from the site's
journal (started/done timestamps per step and host). Measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "scale"
DATA = BENCH / "scale.json"
RESULTS = BENCH / "RESULTS.md"
BEGIN = "<!-- bench_scale.py: begin -->"
END = "<!-- bench_scale.py: end -->"
LAB_FLAGS = ["--jump", "--user", "admin", "--sudo-password", "--ssh-port", "2222"]


def say(text: str) -> None:
    print(f"bench_scale: {text}", flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(cmd: list[str], log: Path) -> dict:
    """Run CMD (stdin closed: nothing may ask), log its output, return the run's record."""
    before = load()
    start = time.monotonic()
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    seconds = round(time.monotonic() - start, 2)
    text = done.stdout + done.stderr
    log.write_text(text)
    run = {"cmd": " ".join(cmd), "seconds": seconds, "rc": done.returncode, "load": before, "log": str(log.relative_to(BENCH))}
    if done.returncode != 0:
        lines = text.splitlines()
        run["failed_lines"] = [ln.strip() for ln in lines if "FAILED" in ln or "UNREACHABLE" in ln or "error" in ln.lower()][:20]
        run["tail"] = lines[-15:]
    say(f"{run['cmd']}: {seconds:.1f} s, exit {done.returncode}, load {before[0]}")
    return run


SNAPSHOT: Path | None = None  # --snapshot: the package tree every run imports (see snapshot())


def hubwizard(*args: str) -> list[str]:
    if SNAPSHOT is None:
        return [sys.executable, "-m", "hubwizard.cli.main", *args]
    code = f"import sys; sys.path.insert(0, {str(SNAPSHOT)!r}); from hubwizard.cli.main import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def snapshot(rev: str = "HEAD") -> tuple[Path, str]:
    """HEAD's tree laid out as the installed package (recipes, assets... mapped in as pyproject says).

    Why: other engineers commit to the shared working tree during a run; a re-apply that runs
    newer recipes than the first apply is not a converged re-apply, nor are sizes comparable."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True,
                            cwd=BENCH, check=True).stdout.strip()
    src, lib = OUT / f"src-{commit}", OUT / f"lib-{commit}"
    if not (lib / "hubwizard").exists():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], capture_output=True, cwd=BENCH.parent, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        lib.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src / "hubwizard", lib / "hubwizard")
        for sub in ("screens", "recipes", "assets", "examples"):
            shutil.copytree(src / sub, lib / "hubwizard" / sub, dirs_exist_ok=True)
    return lib, commit


def hub_container(name: str) -> str:
    return f"hwlab-{name}-hub"


def limit_hub_sessions(name: str, limit: int) -> None:
    """Lower the hub's sshd MaxSessions (a drop-in read before the lab's own) and reload sshd."""
    conf = f"MaxSessions {limit}\n"
    script = f"printf '{conf}' > /etc/ssh/sshd_config.d/10-bench-maxsessions.conf && sshd -t && systemctl reload ssh"
    subprocess.run(["docker", "exec", hub_container(name), "sh", "-c", script], check=True)


def journal_steps(site: Path, since: float) -> dict:
    """Wall seconds per step (first start to last end over hosts) and per host, from the journal."""
    spans: dict[str, dict[str, list[float]]] = {}
    runs: dict[Path, str | None] = {}
    for path in site.parent.glob(".hubwizard/*/journal.jsonl"):
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("ts", 0) < since or e.get("run") != runs.setdefault(path, e.get("run")):
                continue  # earlier runs, and the runs after the first one since SINCE
            span = spans.setdefault(e["step"], {}).setdefault(e["host"], [e["ts"], e["ts"]])
            span[0], span[1] = min(span[0], e["ts"]), max(span[1], e["ts"])
    steps = {}
    for step, hosts in spans.items():
        start = min(s for s, _ in hosts.values())
        end = max(t for _, t in hosts.values())
        steps[step] = {
            "start": round(start - since, 1),
            "seconds": round(end - start, 1),
            "hosts": {h: round(t - s, 1) for h, (s, t) in sorted(hosts.items())},
        }
    return dict(sorted(steps.items(), key=lambda kv: kv[1]["start"]))


def measure(nodes: int, runs: int, streak: int, max_sessions: int | None, keep: bool, tag: str = "") -> dict:
    """One size: lab up, first apply, re-applies, verifies (and a verify streak); lab down."""
    name = f"scale{nodes}{tag}" + (f"ms{max_sessions}" if max_sessions else "")
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    site = out / "site.toml"
    entry: dict = {"nodes": nodes, "lab": name, "hub_max_sessions": max_sessions or "sshd default (10)",
                   "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        subprocess.run(hubwizard("lab", "down", "--name", name), stdin=subprocess.DEVNULL, capture_output=True)
        entry["lab_up"] = timed(hubwizard("lab", "up", "--name", name, "--nodes", str(nodes), *LAB_FLAGS, "-o", str(site)),
                                out / "lab-up.log")
        if entry["lab_up"]["rc"] != 0:
            return entry
        if max_sessions:
            limit_hub_sessions(name, max_sessions)
        since = time.time()
        entry["first_apply"] = timed(hubwizard("apply", "-c", str(site), "--yes"), out / "apply-first.log")
        entry["first_apply_steps"] = journal_steps(site, since)
        entry["reapply"] = [timed(hubwizard("apply", "-c", str(site), "--yes"), out / f"apply-again-{i}.log")
                            for i in range(1, runs + 1)]
        entry["verify"] = [timed(hubwizard("verify", "-c", str(site)), out / f"verify-{i}.log") for i in range(1, runs + 1)]
        if streak:
            entry["verify_streak"] = [timed(hubwizard("verify", "-c", str(site)), out / f"verify-streak-{i}.log")
                                      for i in range(1, streak + 1)]
    finally:
        entry["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        if not keep:
            down = subprocess.run(hubwizard("lab", "down", "--name", name), stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True)
            say(f"lab down --name {name}: exit {down.returncode}")
    return entry


def _median(runs: list[dict]) -> float | None:
    return statistics.median(r["seconds"] for r in runs) if runs else None


def _cell(runs: list[dict]) -> str:
    if not runs:
        return "-"
    secs = [r["seconds"] for r in runs]
    rcs = ",".join(str(r["rc"]) for r in runs)
    loads = ", ".join(f"{r['load'][0]:g}" for r in runs)
    return f"{statistics.median(secs):.1f} s ({min(secs):.1f}-{max(secs):.1f}); exit {rcs}; load {loads}"


def _ratio(sizes: dict, key: str, big: str, small: str) -> str:
    def value(size: str) -> float | None:
        e = sizes.get(size) or next((v for k, v in sizes.items() if k.startswith(size + " (")), {})
        runs = e.get(key)
        if isinstance(runs, dict):
            runs = [runs]
        return _median(runs or [])
    a, b = value(big), value(small)
    if a is None or b is None:
        return "not measured"
    met = "yes" if a / b <= 1.5 else "no"
    row = big if big in sizes else next(k for k in sizes if k.startswith(big + " ("))
    return f"{a / b:.2f}x ({a:.1f} s / {b:.1f} s; rows {row} / {small}), goal <= 1.5x: {met}"


def section(data: dict) -> str:
    """The RESULTS.md section, from scale.json."""
    sizes = data.get("sizes", {})
    lines = [BEGIN, "## Scale behind a jump host (issue 11 item 5)", "",
             "Generated by `python bench/bench_scale.py` (see its docstring and README.md, section Scale); "
             "each lab: `hubwizard lab up --name scaleN --nodes N --jump --user admin --sudo-password "
             "--ssh-port 2222`, then `hubwizard apply -c SITE --yes` (first, then converged re-applies) and "
             "`hubwizard verify -c SITE`. Medians (min-max); every run's exit code; the 1-minute load "
             "average at each run's start (2 cores shared with other engineers' labs).", "",
             "| size | code | hub MaxSessions | measured | first apply | converged re-apply | verify | verify streak |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(sizes, key=lambda k: (sizes[k]["nodes"], str(sizes[k]["hub_max_sessions"]))):
        e = sizes[key]
        first = e.get("first_apply")
        lines.append(f"| {key} | {e.get('commit', '-')} | {e['hub_max_sessions']} | {e['started']} | "
                     f"{_cell([first] if first else [])} | "
                     f"{_cell(e.get('reapply', []))} | {_cell(e.get('verify', []))} | {_cell(e.get('verify_streak', []))} |")
    lines += ["", "Ratios (medians; goal <= 1.5x each):", ""]
    for label, key in (("verify", "verify"), ("converged re-apply", "reapply"), ("first apply", "first_apply")):
        lines.append(f"- {label} 1+8 / 1+2: {_ratio(sizes, key, '1+8', '1+2')}")
    steps = {k: e.get("first_apply_steps", {}) for k, e in sizes.items() if e.get("first_apply_steps")}
    if steps:
        order = sorted(steps, key=lambda k: sizes[k]["nodes"])
        names: list[str] = []
        for k in order:
            names += [s for s in steps[k] if s not in names]
        lines += ["", "First apply per step (wall seconds from the step's first start to its last end on any "
                  "host, from the site's journal; slowest host in brackets):", "",
                  "| step | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
        for s in names:
            cells = []
            for k in order:
                st = steps[k].get(s)
                if not st:
                    cells.append("-")
                    continue
                slow = max(st["hosts"].items(), key=lambda kv: kv[1])
                cells.append(f"{st['seconds']:.1f} ({slow[0]} {slow[1]:.1f})")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    failures = [(k, what, r) for k, e in sizes.items() for what in ("lab_up", "first_apply", "reapply", "verify", "verify_streak")
                for r in (e.get(what) if isinstance(e.get(what), list) else [e.get(what)] if e.get(what) else [])
                if r["rc"] != 0]
    lines += ["", "Failed runs:" if failures else "Failed runs: none.", ""]
    for k, what, r in failures:
        lines.append(f"- {k} {what} (exit {r['rc']}, {r['seconds']:.1f} s, log bench/{r['log']}):")
        lines += [f"    - `{ln[:200]}`" for ln in (r.get("failed_lines") or r.get("tail", []))[:8]]
    notes = data.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(data: dict) -> None:
    """Replace (or append) the scale section of RESULTS.md; the rest of the file stays as it is."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    block = section(data)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--runs", type=int, default=3, help="re-applies and verifies per size (default 3)")
    p.add_argument("--streak", type=int, default=0, help="then this many verifies in a row at the largest size")
    p.add_argument("--hub-max-sessions", type=int, help="lower the hub's sshd MaxSessions before the first apply")
    p.add_argument("--keep", action="store_true", help="leave the labs up")
    p.add_argument("--tag", default="", help="suffix of the lab names (scaleN<TAG>), to run beside another run")
    p.add_argument("--report", action="store_true", help="only rewrite the RESULTS.md section from scale.json")
    p.add_argument("--snapshot", nargs="?", const="HEAD", metavar="REV",
                   help="run hubwizard from REV's tree (default HEAD) frozen in bench/out/scale (others commit meanwhile)")
    args = p.parse_args(argv)
    global SNAPSHOT
    commit = ""
    if args.snapshot and not args.report:
        SNAPSHOT, commit = snapshot(args.snapshot)
        say(f"running hubwizard from {SNAPSHOT} (commit {commit})")
    data = json.loads(DATA.read_text()) if DATA.exists() else {"sizes": {}, "notes": []}
    failed = False
    if not args.report:
        for nodes in args.nodes:
            streak = args.streak if nodes == max(args.nodes) else 0
            entry = measure(nodes, args.runs, streak, args.hub_max_sessions, args.keep, args.tag)
            key = f"1+{nodes}" + (f" (MaxSessions {args.hub_max_sessions})" if args.hub_max_sessions else "")
            entry["cpus"] = os.cpu_count()
            entry["commit"] = commit or "working tree at " + subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH).stdout.strip()
            (OUT / entry["lab"] / "entry.json").write_text(json.dumps({key: entry}, indent=2) + "\n")
            data = json.loads(DATA.read_text()) if DATA.exists() else data  # another run may have written meanwhile
            data["sizes"][key] = entry
            DATA.write_text(json.dumps(data, indent=2) + "\n")
            failed |= any(r["rc"] != 0 for what in ("lab_up", "first_apply", "reapply", "verify", "verify_streak")
                          for r in (entry.get(what) if isinstance(entry.get(what), list)
                                    else [entry.get(what)] if entry.get(what) else []))
    write_section(data)
    say(f"wrote {DATA} and the scale section of {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
