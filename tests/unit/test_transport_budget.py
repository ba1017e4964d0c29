"""The channel budget's logic: waiting for a slot, learning the server's limit from a refusal,
giving up with a message that names the host, the cause and the fix."""

from __future__ import annotations

import threading
import time

import pytest

from hubwizard.remote.channels import ChannelBudget, ChannelRefusedError


class Chan:
    """Stands for a channel: all the budget looks at is ``closed``."""

    closed = False


class Refused(Exception):
    pass


class Server:
    """Refuses a channel past ``limit`` open ones, as sshd's MaxSessions does."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, []

    def opener(self) -> Chan:
        self.open = [c for c in self.open if not c.closed]
        if len(self.open) >= self.limit:
            raise Refused
        c = Chan()
        self.open.append(c)
        return c


def fast(limit: int, **kw) -> ChannelBudget:
    return ChannelBudget("hub", limit, first_delay=0.001, **kw)


def test_a_full_budget_waits_for_a_close():
    budget, server = fast(2), Server(10)
    a, b = budget.open(server.opener, "a", (Refused,)), budget.open(server.opener, "b", (Refused,))
    got: list[Chan] = []
    waiter = threading.Thread(target=lambda: got.append(budget.open(server.opener, "c", (Refused,))))
    waiter.start()
    time.sleep(0.2)
    assert not got and budget.held() == 2
    a.closed = True
    waiter.join(5)
    assert got and budget.held() == 2 and b.closed is False


def test_refusal_teaches_the_limit():
    budget, server = fast(8), Server(3)
    chans = [budget.open(server.opener, str(i), (Refused,)) for i in range(3)]
    got: list[Chan] = []
    waiter = threading.Thread(target=lambda: got.append(budget.open(server.opener, "4th", (Refused,))))
    waiter.start()
    time.sleep(0.2)
    assert budget.limit == 3 and budget.refusals == 1 and not got  # waits, does not fail
    chans[0].closed = True
    waiter.join(5)
    assert got


def test_refused_with_nothing_open_gives_up_with_cause_and_fix():
    budget = fast(8, tries=4)
    with pytest.raises(ChannelRefusedError) as err:
        budget.open(Server(0).opener, "the command `true`", (Refused,))
    assert budget.refusals == 4 and budget.limit == 8  # nothing held: nothing learned
    text = str(err.value)
    assert "hub" in text and "MaxSessions" in text and "MaxStartups" in text and "`true`" in text
    assert "sshd_config" in err.value.fix and err.value.exit_code == 3


def test_without_learning_a_full_server_is_an_error():
    budget, server = fast(10, learn=False, tries=3), Server(2)
    for i in range(2):
        budget.open(server.opener, str(i), (Refused,))
    with pytest.raises(ChannelRefusedError):
        budget.open(server.opener, "third", (Refused,))
    assert budget.limit == 10


def test_other_errors_free_the_reservation():
    budget = fast(1)

    def broken() -> Chan:
        raise OSError("connection dropped")

    with pytest.raises(OSError):
        budget.open(broken, "x", (Refused,))
    assert budget.open(Server(5).opener, "y", (Refused,)) is not None


def test_an_idle_pooled_channel_is_reclaimed_for_waiting_work():
    budget, server = fast(1), Server(5)

    class Pool:
        def __init__(self) -> None:
            self.idle = budget.open(server.opener, "pooled", (Refused,))

        def drop_idle(self) -> bool:
            if self.idle.closed:
                return False
            self.idle.closed = True
            return True

    pool = Pool()
    budget.add_reclaimer(pool.drop_idle)
    assert budget.open(server.opener, "command", (Refused,)) is not None
    assert pool.idle.closed


def test_a_budget_that_never_frees_is_named():
    budget, server = fast(1, wait_s=0.2), Server(5)
    budget.open(server.opener, "long", (Refused,))
    with pytest.raises(ChannelRefusedError) as err:
        budget.open(server.opener, "the Docker API", (Refused,))
    assert "hub" in str(err.value) and "busy" in str(err.value) and "MaxSessions" in (err.value.fix or "")


def test_a_dropped_channel_frees_its_slot():
    budget, server = fast(1), Server(5)
    budget.open(server.opener, "leaked", (Refused,))  # not kept: garbage, like a client never closed
    server.open.clear()
    assert budget.held() == 0
