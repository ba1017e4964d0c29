"""bench/bench_scale.py's report logic: step spans from a journal, ratios, and a RESULTS.md section
that replaces itself and leaves the rest of the file alone. Timings are never asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_scale  # noqa: E402


def _run(seconds: float, rc: int = 0) -> dict:
    return {"cmd": "x", "seconds": seconds, "rc": rc, "load": [5.0, 4.0, 3.0], "log": "out/x.log"}


def test_journal_steps_span_every_host_since_the_run(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    journal = tmp_path / ".hubwizard" / "lab" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    rows = [(50, "docker", "hub", "started"), (100, "docker", "hub", "started"), (130, "docker", "hub", "done"),
            (101, "docker", "node1", "started"), (160, "docker", "node1", "done"), (161, "swarm", "hub", "started")]
    later = json.dumps({"ts": 900, "run": "next", "step": "docker", "host": "hub", "phase": "done"})
    journal.write_text("\n".join(json.dumps({"ts": ts, "run": "r", "step": s, "host": h, "phase": p})
                                 for ts, s, h, p in rows) + f"\n{later}\n{{torn")
    steps = bench_scale.journal_steps(site, since=100)
    assert list(steps) == ["docker", "swarm"]
    assert steps["docker"]["seconds"] == 60 and steps["docker"]["hosts"] == {"hub": 30, "node1": 59}


def test_section_has_ratios_and_failures_and_replaces_itself(tmp_path: Path, monkeypatch) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nkept\n")
    monkeypatch.setattr(bench_scale, "RESULTS", results)
    sizes = {
        "1+2": {"nodes": 2, "hub_max_sessions": 10, "started": "t", "first_apply": _run(200),
                "reapply": [_run(5), _run(6), _run(7)], "verify": [_run(10)] * 3},
        "1+8": {"nodes": 8, "hub_max_sessions": 10, "started": "t", "first_apply": _run(400),
                "reapply": [_run(6)] * 3, "verify": [_run(12), _run(13, rc=1), _run(12)]},
    }
    sizes["1+8"]["verify"][1]["failed_lines"] = ["FAILED node3 - swarm"]
    bench_scale.write_section({"sizes": sizes, "notes": []})
    bench_scale.write_section({"sizes": sizes, "notes": []})
    text = results.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and text.count(bench_scale.BEGIN) == 1
    assert "verify 1+8 / 1+2: 1.20x" in text and "first apply 1+8 / 1+2: 2.00x" in text and "1.5x: no" in text
    assert "FAILED node3 - swarm" in text
