"""The morning rush (issue 16 item 3): N students log in through the lab's OpenID provider and
start their servers at the same moment, as a class does at 9:00.

    python bench/bench_rush.py --users 10 25 50            # one lab (1+2, 50 students), apply, measure
    python bench/bench_rush.py --users 10 --site rush.toml # a lab already applied (its students)
    python bench/bench_rush.py --report                    # rewrite the RESULTS.md section

For each N: first the same N spawns one after another (the baseline: login, start, wait until
ready, stop), then all N at once behind a barrier. Each student is a real browser-like session
(cookies, the provider's form, the hub's callback) and starts the server through JupyterHub's
REST API with the session's cookie and its XSRF token, as JupyterLab's "Start" does. Reported:
time to every server ready (p50, p95, max from the common start), failed logins or spawns (must
be 0), the ratio to the sequential total, and CPU seconds used meanwhile by the hub process, the
proxy, and each lab machine (the 2 cores are shared by all of them). Measured, never asserted.
Every run is merged into bench/rush.json; labs this script brings up are taken down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # tests.lab_web: the lab hub as its users reach it

from hubwizard.core.config import load_site  # noqa: E402
from tests.lab_web import LabHub, oidc_login, session  # noqa: E402

OUT = BENCH / "out" / "rush"
DATA = BENCH / "rush.json"
RESULTS = BENCH / "RESULTS.md"
BEGIN = "<!-- bench_rush.py: begin -->"
END = "<!-- bench_rush.py: end -->"
READY_TIMEOUT = 600.0  # the rendered start_timeout is 300 s; past this a spawn counts as failed


def say(text: str) -> None:
    print(f"bench_rush: {text}", flush=True)


# -- one student -----------------------------------------------------------------------------------


class Student:
    """A browser-like session of one lab student: login, start, wait, stop."""

    def __init__(self, hub: LabHub, name: str) -> None:
        self.hub, self.name = hub, name
        self.s = session(hub)

    def _api(self, method: str, path: str) -> Any:
        xsrf = self.s.cookies.get("_xsrf", path="/hub/") or self.s.cookies.get("_xsrf") or ""
        headers = {"X-XSRFToken": xsrf, "Referer": f"{self.hub.url}/hub/home"}
        return self.s.request(method, f"{self.hub.url}/hub/api{path}", headers=headers, timeout=120)

    def login(self, attempts: int = 3) -> int:
        """Log in as a student does: a 500 or a timeout is met by logging in again (counted)."""
        for attempt in range(attempts):
            try:
                home = oidc_login(self.s, self.hub, self.name)
            except requests.RequestException as exc:
                problem = f"login of {self.name}: {type(exc).__name__}"
            else:
                if home.status_code == 200 and home.url.endswith("/hub/home"):
                    return attempt
                problem = f"login of {self.name}: {home.status_code} at {home.url.split('?')[0]}"
            self.s = session(self.hub)
        raise RuntimeError(f"{problem} ({attempts} attempts)")

    def start(self) -> None:
        reply = self._api("POST", f"/users/{self.name}/server")
        if reply.status_code not in (201, 202, 400):  # 400: already running
            raise RuntimeError(f"start {self.name}: {reply.status_code} {reply.text[:200]}")

    def state(self) -> str:
        """ready, pending, or stopped (a spawn that failed ends stopped)."""
        try:
            reply = self._api("GET", f"/users/{self.name}")
        except requests.RequestException:
            return "pending"  # the hub is too busy to answer: a spawn-pending page keeps waiting too
        if reply.status_code != 200:
            return "pending"  # the hub is busy; ask again
        server = (reply.json().get("servers") or {}).get("")
        if not server:
            return "stopped"
        return "ready" if server.get("ready") else "pending"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        seen_pending = False
        while time.monotonic() < deadline:
            state = self.state()
            if state == "ready":
                return
            if state == "stopped" and seen_pending:
                raise RuntimeError(f"{self.name}'s spawn failed (the hub dropped the pending server)")
            seen_pending = seen_pending or state == "pending"
            time.sleep(1.0)
        raise TimeoutError(f"{self.name}'s server not ready after {timeout:.0f} s")

    def stop(self) -> None:
        self._api("DELETE", f"/users/{self.name}/server")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.state() != "stopped":
            time.sleep(1.0)


# -- CPU meters ------------------------------------------------------------------------------------


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60).stdout


HUB_PROCS = r"""c=$(docker ps -q -f label=com.docker.swarm.service.name=jupyterhub | head -1)
[ -n "$c" ] && docker exec "$c" sh -c 'for p in /proc/[0-9]*; do
  printf "%s %s\n" "$(cat $p/comm 2>/dev/null)" "$(cut -d" " -f14,15 $p/stat 2>/dev/null)"; done'"""


def _cgroup_cpu_s(pid: int) -> float | None:
    """CPU seconds of the cgroup of PID (a lab machine's container): cgroup v1 or v2."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "cpuacct" in controllers.split(","):
                return int(Path(f"/sys/fs/cgroup/cpuacct{path}/cpuacct.usage").read_text()) / 1e9
        path = next(line.split("::", 1)[1] for line in lines if line.startswith("0::"))
        stat = Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text()
        return int(stat.split("usage_usec")[1].split()[0]) / 1e6
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def _process_kind(comm: str) -> str:
    """The hub container's processes: the proxy is node (configurable-http-proxy), the hub Python."""
    if comm in ("node", "configurable-h"):
        return "proxy"
    return "hub" if "python" in comm or "jupyterhub" in comm else ""


def cpu_sample(lab: str, machines: list[str]) -> dict[str, float]:
    """CPU seconds so far: the hub's processes (jupyterhub, the proxy) and each lab machine."""
    out: dict[str, float] = {}
    hub_box = f"hwlab-{lab}-hub"
    for line in _docker("exec", hub_box, "sh", "-c", HUB_PROCS).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            key = _process_kind(parts[0])
            if key:
                out[key] = out.get(key, 0.0) + (int(parts[1]) + int(parts[2])) / os.sysconf("SC_CLK_TCK")
    for machine in machines:
        pid = _docker("inspect", "-f", "{{.State.Pid}}", f"hwlab-{lab}-{machine}").strip()
        if not pid.isdigit():
            continue
        seconds = _cgroup_cpu_s(int(pid))
        if seconds is not None:
            out[machine] = seconds
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 1) for k in after if k in before}


# -- the two ways ----------------------------------------------------------------------------------


def sequential(hub: LabHub, names: list[str]) -> dict[str, Any]:
    """The baseline: each student logs in, starts, waits until ready, and stops, one at a time."""
    times, failures = [], []
    for name in names:
        student = Student(hub, name)
        t0 = time.monotonic()
        try:
            student.login()
            student.start()
            student.wait_ready()
            times.append(time.monotonic() - t0)
        except (OSError, RuntimeError, TimeoutError, requests.RequestException) as exc:
            failures.append(str(exc))
        finally:
            student.stop()
    return {"total_s": round(sum(times), 1), "per_user_s": round(statistics.mean(times), 1) if times else None,
            "failures": failures}


def rush(hub: LabHub, names: list[str], lab: str, machines: list[str]) -> dict[str, Any]:
    """Everyone at once: logins and starts released together by a barrier."""
    barrier = threading.Barrier(len(names))
    t_start: list[float] = []

    retries: list[int] = []

    def one(name: str) -> tuple[float | None, float | None, str | None]:
        student = Student(hub, name)
        barrier.wait()
        if not t_start:
            t_start.append(time.monotonic())
        t0 = t_start[0]
        try:
            retries.append(student.login())
            logged_in = time.monotonic() - t0
            student.start()
            student.wait_ready()
            return logged_in, time.monotonic() - t0, None
        except (OSError, RuntimeError, TimeoutError, requests.RequestException) as exc:
            return None, None, str(exc)

    before = cpu_sample(lab, machines)
    wall0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(one, names))
    wall = time.monotonic() - wall0
    cpu = cpu_used(before, cpu_sample(lab, machines))
    _stop_all(hub, names)
    ready = sorted(r[1] for r in results if r[1] is not None)
    logins = sorted(r[0] for r in results if r[0] is not None)
    return {
        "all_ready_s": round(max(ready), 1) if ready else None,
        "p50_s": round(statistics.median(ready), 1) if ready else None,
        "p95_s": round(ready[max(0, int(0.95 * len(ready)) - 1)], 1) if ready else None,
        "login_p95_s": round(logins[max(0, int(0.95 * len(logins)) - 1)], 1) if logins else None,
        "failures": [r[2] for r in results if r[2]],
        "login_retries": sum(retries),
        "wall_s": round(wall, 1),
        "cpu_s": cpu,
    }


def _stop_all(hub: LabHub, names: list[str]) -> None:
    """Stop every student's server (a fresh login each: the rush's sessions are gone)."""

    def stop(name: str) -> None:
        student = Student(hub, name)
        try:
            student.login()
            student.stop()
        except (OSError, RuntimeError, TimeoutError, requests.RequestException) as exc:
            say(f"stopping {name}: {exc}")

    with ThreadPoolExecutor(max_workers=min(len(names), 10)) as pool:
        list(pool.map(stop, names))


# -- lab, record, report ---------------------------------------------------------------------------


def hubwizard(*args: str) -> list[str]:
    return [sys.executable, "-m", "hubwizard.cli.main", *args]


def bring_up(lab: str, students: int, nodes: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    site = OUT / f"{lab}.toml"
    subprocess.run(hubwizard("lab", "down", "--name", lab), capture_output=True)
    say(f"lab up {lab}: 1+{nodes}, {students} students")
    subprocess.run(hubwizard("lab", "up", "--name", lab, "--nodes", str(nodes), "--students", str(students),
                             "-o", str(site)), check=True, stdin=subprocess.DEVNULL)
    t0 = time.monotonic()
    done = subprocess.run(hubwizard("apply", "-c", str(site), "--yes"), stdin=subprocess.DEVNULL)
    say(f"apply: exit {done.returncode} in {time.monotonic() - t0:.0f} s")
    if done.returncode:
        raise SystemExit("apply failed: see its output above")
    return site


def record(entry: dict[str, Any]) -> None:
    data = json.loads(DATA.read_text()) if DATA.exists() else {"runs": []}
    data["runs"].append(entry)
    DATA.write_text(json.dumps(data, indent=2) + "\n")


def _baseline(run: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[float | None, str]:
    """The sequential total for this N: measured, or N x the mean per student of a measured run
    (one after another the spawns do not overlap, so the total grows with N; marked "est.")."""
    seq = run.get("sequential") or {}
    if seq.get("total_s"):
        return seq["total_s"], f"{seq['total_s']} s"
    per = [r["sequential"]["per_user_s"] for r in runs if (r.get("sequential") or {}).get("per_user_s")]
    if not per:
        return None, "-"
    total = round(run["n"] * statistics.mean(per), 1)
    return total, f"{total} s (est.: N x {statistics.mean(per):.1f} s)"


def _retries(rush_result: dict[str, Any]) -> str:
    n = rush_result.get("login_retries")
    return f" ({n} logins retried)" if n else ""


def section(data: dict[str, Any]) -> str:
    rows = ["| N | hub config | all ready (rush) | p50 | p95 | logins p95 | failed | sequential total | ratio "
            "| CPU s: hub / proxy / machines | load at start |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in data["runs"]:
        r = run["rush"]
        total, shown = _baseline(run, data["runs"])
        ratio = f"{r['all_ready_s'] / total:.2f}x" if r.get("all_ready_s") and total else "-"
        cpu = r.get("cpu_s", {})
        machines = ", ".join(f"{k} {v}" for k, v in cpu.items() if k not in ("hub", "proxy"))
        config = run.get("config", run.get("commit", "-"))
        rows.append(f"| {run['n']} | {config} | {r['all_ready_s']} s | {r['p50_s']} s | {r['p95_s']} s | {r['login_p95_s']} s | "
                    f"{len(r['failures'])}{_retries(r)} | {shown} | {ratio} | "
                    f"{cpu.get('hub', '-')} / {cpu.get('proxy', '-')} / {machines} | {run['load'][0]} |")
    head = ("## Morning rush (bench_rush.py)\n\nN students of a 1+2 lab log in through the lab's OpenID provider and "
            "start their servers at once; the sequential total is the same N one after another. "
            "Run: `python bench/bench_rush.py --users 10 25 50`.\n\n")
    return head + "\n".join(rows) + "\n"


def write_section() -> None:
    data = json.loads(DATA.read_text())
    text = RESULTS.read_text()
    block = f"{BEGIN}\n{section(data)}{END}"
    text = (text.split(BEGIN)[0] + block + text.split(END, 1)[1]) if BEGIN in text else f"{text.rstrip()}\n\n{block}\n"
    RESULTS.write_text(text)


def measure(site_path: Path, sizes: list[int], sequential_max: int, lab: str, label: str | None = None) -> None:
    hub = LabHub(site_path, load_site(site_path))
    machines = [h.name for h in hub.site.hosts]
    for n in sizes:
        names = [f"student{i}" for i in range(1, n + 1)]
        load = [round(x, 2) for x in os.getloadavg()]
        seq = sequential(hub, names) if n <= sequential_max else None
        if seq:
            say(f"N={n} sequential: {seq['total_s']} s total, {len(seq['failures'])} failed")
        result = rush(hub, names, lab, machines)
        say(f"N={n} rush: all ready {result['all_ready_s']} s (p50 {result['p50_s']}, p95 {result['p95_s']}), "
            f"{len(result['failures'])} failed, CPU {result['cpu_s']}")
        for failure in result["failures"][:5]:
            say(f"  {failure}")
        record({"n": n, "load": load, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip(),
                "sequential": seq, "rush": result, **({"config": label} if label else {})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--site", type=Path, help="a lab already applied (its students are used)")
    parser.add_argument("--lab", default="rush", help="lab name (default rush)")
    parser.add_argument("--sequential-max", type=int, default=50, help="largest N also run one after another")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    parser.add_argument("--label", help="what the hub ran (a commit, a tuning) for the table's config column")
    parser.add_argument("--report", action="store_true", help="only rewrite RESULTS.md from rush.json")
    args = parser.parse_args(argv)
    if args.report:
        write_section()
        return 0
    site = args.site or bring_up(args.lab, max(args.users), args.nodes)
    try:
        measure(site, args.users, args.sequential_max, args.lab, args.label)
    finally:
        if not args.site and not args.keep:
            subprocess.run(hubwizard("lab", "down", "--name", args.lab), capture_output=True)
    write_section()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
