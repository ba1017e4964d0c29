"""Append-only JSON-lines journal per site: what ran where, with what inputs, and how it ended.

Each record is one line written with a single O_APPEND write and fsync'd, so a crash at
any instant leaves every complete line readable; a torn last line is ignored on read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    ts: float
    run: str
    step: str
    host: str
    phase: str  # started | done | failed | skipped
    digest: str = ""
    message: str = ""


def journal_path(site_path: str | Path, site_name: str) -> Path:
    """``.hubwizard/NAME/journal.jsonl`` beside the site file."""
    return Path(site_path).resolve().parent / ".hubwizard" / site_name / "journal.jsonl"


class Journal:
    """Append and read the journal of one site; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, entry: Entry) -> None:
        line = (json.dumps(entry.__dict__, sort_keys=True) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def record(self, run: str, step: str, host: str, phase: str, digest: str = "", message: str = "") -> None:
        self.append(Entry(time.time(), run, step, host, phase, digest, message))

    def entries(self) -> list[Entry]:
        """Every complete record; a torn or foreign line is skipped, never fatal."""
        if not self.path.exists():
            return []
        out: list[Entry] = []
        with self.path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn write at a crash: the step it began is simply not done
                try:
                    data = json.loads(raw)
                    out.append(Entry(**data))
                except (ValueError, TypeError):
                    continue
        return out

    def latest(self) -> dict[tuple[str, str], Entry]:
        """The last record per (step, host): the state the next run starts from."""
        state: dict[tuple[str, str], Entry] = {}
        for e in self.entries():
            state[(e.step, e.host)] = e
        return state
