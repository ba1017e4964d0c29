"""One place that removes secret values from any text leaving the engine."""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable

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


# --------------------------------------------------------------------------- outside an engine

_SOURCES: list[weakref.WeakMethod] = []  # each live Secrets' all_values
_SOURCES_LOCK = threading.Lock()


def watch(all_values: Callable[[], list[str]]) -> None:
    """Remember a secrets store (a bound ``all_values``): text that leaves without an engine's
    redactor (a crash log, the last error line) is masked with every value it holds by then,
    prompted and run-time ones included. Held weakly: a store that is gone is forgotten."""
    with _SOURCES_LOCK:
        _SOURCES[:] = [ref for ref in _SOURCES if ref() is not None]
        _SOURCES.append(weakref.WeakMethod(all_values))


def redact_known(text: str) -> str:
    """``text`` without any value of a live secrets store, nor a token shape."""
    values: list[str] = []
    with _SOURCES_LOCK:
        for ref in _SOURCES:
            method = ref()
            if method is not None:
                values += method()
    return Redactor(values)(text)
