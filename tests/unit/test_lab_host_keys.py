"""The lab reads each machine's host keys from inside it; a read that misses the ed25519 key (an
exec answering late on a loaded engine) is read again, since clients negotiate ed25519 first and
a known_hosts without it fails the first login as "holds another type" (seen once in CI)."""

from __future__ import annotations

from hubwizard.lab import machines

ED, EC = "ssh-ed25519 AAAAed", "ecdsa-sha2-nistp256 AAAAec"


class _Box:
    """A machine whose ed25519 key is not readable on the first N reads (what the engine answered)."""

    name = "hwlab-t-node1"

    def __init__(self, misses: int) -> None:
        self.misses = misses

    def exec_run(self, cmd, demux=False):  # noqa: ANN001, ANN201 - the SDK's signature
        path = cmd[-1]
        if "ed25519" in path:
            if self.misses:
                self.misses -= 1
                return 1, b""
            return 0, (ED + " root@node1\n").encode()
        if "ecdsa" in path:
            return 0, (EC + " root@node1\n").encode()
        return 1, b""


def test_a_missed_ed25519_key_is_read_again() -> None:
    assert machines.host_keys(_Box(misses=2), timeout=10) == [ED, EC]


def test_a_machine_without_ed25519_gives_what_it_has_after_the_wait() -> None:
    assert machines.host_keys(_Box(misses=10**6), timeout=1) == [EC]
