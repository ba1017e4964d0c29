"""Benchmark `hubwizard lab up --nodes N` with a cold and a warm cache, and `lab down`.

Why isolated: other labs (and other people's tests) share this Docker engine and the default
image cache, so the cold run must not delete images they use. It builds into its own image
repository ($HUBWIZARD_LAB_REPO) and its own cache directory ($HUBWIZARD_HOME): a really cold
start (debootstrap, every image build, every push), then the same again warm; its images are
removed at the end. A last pair measures warm `lab up` against the default, shared cache.

    python bench/bench_lab.py [--nodes 2] [--with-docker] [--skip-cold]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], env: dict[str, str]) -> float:
    """Run `python -m hubwizard.lab.cli ARGS` and return wall seconds (exit on failure)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hubwizard.lab.cli", *args], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"bench: `lab {' '.join(args)}` failed (exit {done.returncode})")
    return elapsed


def cycle(label: str, name: str, env: dict[str, str], work: Path, up_flags: list[str]) -> list[tuple[str, float]]:
    """One `lab up` then `lab down`, both timed; down always runs."""
    rows = []
    try:
        print(f"bench: {label}: lab up…", flush=True)
        rows.append((f"lab up   ({label})", timed(["up", "--name", name, "-o", str(work / f"{name}.toml"), *up_flags], env)))
    finally:
        rows.append((f"lab down ({label})", timed(["down", "--name", name], env)))
    return rows


def cleanup_images(env: dict[str, str]) -> None:
    """Remove the benchmark's own images (never the shared hubwizard-lab/* ones)."""
    code = "import docker; from hubwizard import lab_images as li; li.remove_cached(docker.from_env())"
    subprocess.run([sys.executable, "-c", code], env=env, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--with-docker", action="store_true")
    parser.add_argument("--skip-cold", action="store_true", help="only the warm run on the shared cache")
    args = parser.parse_args()
    flags = ["--nodes", str(args.nodes), *(["--with-docker"] if args.with_docker else [])]
    pid = os.getpid()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hwbench-") as tmp:
        work = Path(tmp)
        if not args.skip_cold:
            isolated = {**os.environ, "HUBWIZARD_HOME": str(work / "home"), "HUBWIZARD_LAB_REPO": f"hwbench{pid}"}
            try:
                rows += cycle("cold cache", f"bench{pid}c", isolated, work, flags)
                rows += cycle("warm cache", f"bench{pid}w", isolated, work, flags)
            finally:
                cleanup_images(isolated)
                shutil.rmtree(work / "home", ignore_errors=True)
        rows += cycle("warm, shared cache", f"bench{pid}s", dict(os.environ), work, flags)
    load = os.getloadavg()[0]
    print(f"\n{'what':<36}{'seconds':>9}   (nodes={args.nodes}, {os.cpu_count()} cpus, load {load:.1f})")
    for what, seconds in rows:
        print(f"{what:<36}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
