"""One place that removes secret values from any text leaving the engine."""

from __future__ import annotations

import re
import threading

MASK = "********"


class Redactor:
    """Replaces every registered secret (and known token shapes) with a mask."""

    _TOKEN_SHAPES = re.compile(r"SWMTKN-1-[0-9a-z]+-[0-9a-z]+")

    def __init__(self, values: list[str] | None = None) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        for v in values or []:
            self.add(v)

    def add(self, value: str | None) -> None:
        if value and len(value) >= 4:
            with self._lock:
                self._values.add(value)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for v in values:
            if v in text:
                text = text.replace(v, MASK)
        return self._TOKEN_SHAPES.sub(MASK, text)
