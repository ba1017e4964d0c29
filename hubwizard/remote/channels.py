"""How many session channels one SSH connection may hold at once, and opening them politely.

OpenSSH refuses a session channel (a command, SFTP, a Docker API ``dial-stdio``) past
``MaxSessions`` open ones on one connection: 10 by default, fewer on some bastions. The hub's
one connection carries its own commands, the Docker API calls every node's checks make on the
manager and (not counted by sshd) the tunnels to jumped nodes. So the transport keeps a budget:
work beyond it waits for a channel to close instead of failing. A refused channel is retried
with back-off; a refusal while ``n`` of ours are open teaches the budget the server allows only
``n``. Forwarding channels (``direct-tcpip``) do not count against ``MaxSessions`` and are not
budgeted here.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from hubwizard.core.errors import UnreachableError

DEFAULT_BUDGET = 8  # OpenSSH's default MaxSessions 10, minus a margin for channels sshd frees late
WAIT_S = 600.0  # longest wait for a free channel before calling it a fault
TRIES = 6  # refused opens of one channel before giving up: ~6 s with the back-off below
FIRST_DELAY_S = 0.1
POLL_S = 0.05


class ChannelRefusedError(UnreachableError):
    """The SSH server refused a channel on an open connection, again and again."""

    title = "SSH channel refused"


def refused_error(host: str, what: str, tries: int, held: int) -> ChannelRefusedError:
    """What a refused session means and what to change, without paramiko's words."""
    return ChannelRefusedError(
        f"{host}: the SSH server refused to open a session for {what} ({tries} tries over a few seconds, "
        f"{held} other session(s) of hubwizard open on that connection). sshd limits sessions per connection "
        "with MaxSessions (10 by default; 0 allows none) and connections being set up with MaxStartups",
        fix=f"on {host}, raise `MaxSessions` in /etc/ssh/sshd_config (e.g. `MaxSessions 20`; also check Match "
        "blocks and `MaxStartups`), reload sshd (`systemctl reload ssh`), then run again: finished steps are kept",
    )


def busy_error(host: str, what: str, limit: int, waited: float) -> ChannelRefusedError:
    return ChannelRefusedError(
        f"{host}: no SSH session became free for {what} in {waited:.0f} s: all {limit} sessions the connection "
        "may hold stayed busy (long commands or Docker API streams)",
        fix=f"raise `MaxSessions` in /etc/ssh/sshd_config on {host} and reload sshd, or run fewer steps at once",
    )


class ChannelBudget:
    """Counts the open session channels of one connection; ``open`` waits for a free one."""

    def __init__(self, host: str, limit: int = DEFAULT_BUDGET, *, learn: bool = True,
                 wait_s: float = WAIT_S, tries: int = TRIES, first_delay: float = FIRST_DELAY_S) -> None:
        self.host, self.limit, self.learn = host, max(1, limit), learn
        self.wait_s, self.tries, self.first_delay = wait_s, tries, first_delay
        self._cond = threading.Condition()
        self._held: weakref.WeakSet[Any] = weakref.WeakSet()  # a dropped channel frees its slot too
        self._reserved = 0
        self._reclaimers: list[weakref.WeakMethod] = []
        self.refusals = 0  # refused opens so far (figures, tests)
        self.peak = 0  # most channels held at once

    # -- counting ---------------------------------------------------------------
    def held(self) -> int:
        """Channels of ours the server still counts (closed ones free their slot)."""
        with self._cond:
            return self._held_locked()

    def _held_locked(self) -> int:
        return sum(1 for c in list(self._held) if not c.closed)

    def add_reclaimer(self, method: Callable[[], bool]) -> None:
        """``method()`` closes one idle channel it keeps (a Docker API pool) and says whether it did."""
        with self._cond:
            self._reclaimers.append(weakref.WeakMethod(method))

    def _reclaim(self) -> bool:
        with self._cond:
            alive = [r for r in self._reclaimers if r() is not None]
            self._reclaimers = alive
        return any(m() for m in (r() for r in alive) if m is not None)

    def _reserve(self, what: str) -> None:
        """Wait for a slot below the limit; reclaim idle pooled channels while waiting."""
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._cond:
                if self._held_locked() + self._reserved < self.limit:
                    self._reserved += 1
                    return
            if time.monotonic() > deadline:
                raise busy_error(self.host, what, self.limit, self.wait_s)
            if not self._reclaim():
                with self._cond:
                    self._cond.wait(POLL_S)

    def _settle(self, chan: Any | None) -> None:
        with self._cond:
            self._reserved -= 1
            if chan is not None:
                self._held.add(chan)
                self.peak = max(self.peak, self._held_locked())
            self._cond.notify_all()

    def _refused(self, again: bool) -> int:
        """A refusal: learn the server's limit from what we hold; return that number.

        Refused while holding the most we ever held: the server allows just that many. Refused
        with fewer held is first taken for a slot sshd frees a moment after our close, and only
        ``again`` for a slot the server still counts (a timed-out command still running)."""
        with self._cond:
            self.refusals += 1
            held = self._held_locked()
            if self.learn and 0 < held < self.limit and (held >= self.peak or again):
                self.limit = held
            return held

    # -- opening ---------------------------------------------------------------
    def open(self, opener: Callable[[], Any], what: str, refused: tuple[type[BaseException], ...]) -> Any:
        """``opener()`` under the budget; a refusal (one of ``refused``) is retried with back-off."""
        delay = self.first_delay
        for attempt in range(1, self.tries + 1):
            self._reserve(what)
            try:
                chan = opener()
            except refused:
                self._settle(None)
                held = self._refused(again=attempt > 1)
                if attempt == self.tries:
                    raise refused_error(self.host, what, self.tries, held) from None
                time.sleep(delay)
                delay *= 2
                continue
            except BaseException:
                self._settle(None)
                raise
            self._settle(chan)
            return chan
        raise AssertionError("unreachable")  # pragma: no cover
