"""A command's input (stdin and its end), sent so that sshd never drops the whole connection.

paramiko decides to send a channel's data or EOF under the channel's lock, then sends it after
releasing that lock. When the command has already ended, paramiko's own thread can answer
sshd's CLOSE in between; our EOF or data then reaches sshd after both CLOSEs, for a channel it
has freed, and OpenSSH disconnects the connection: "ieof packet referred to nonexistent channel"
(seen in CI: verify's first checks on the hub lost every channel of the connection; reproduced
by delaying the EOF). Here the decision and the sending happen while holding the transport's
send lock, which paramiko's thread needs for its CLOSE too, so the order on the wire is ours.

A command that ends without reading all its input (exits early, fails to open its file) is not
an error of the connection: the rest of the input is dropped and the exit status tells."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

KEX_WAIT_S = 30.0  # as paramiko's clear_to_send_timeout: a key exchange in progress
HEADROOM = 64  # bytes of a packet that are not payload (as paramiko reserves)
STALL_S = 600.0  # a command that takes none of its input for this long is given up


class InputClosed(Exception):
    """The command's side closed before all of its input was sent."""


@contextlib.contextmanager
def _send_lock(transport: Any, deadline: float) -> Iterator[bool]:
    """Hold the transport's send lock outside a key exchange; False when the connection is gone."""
    while True:
        transport.clear_to_send.wait(0.1)
        if not transport.is_active():
            yield False
            return
        transport.clear_to_send_lock.acquire()
        if transport.clear_to_send.is_set():
            break
        transport.clear_to_send_lock.release()
        if time.monotonic() > deadline:
            raise TimeoutError("the SSH key exchange did not finish")
    try:
        yield True
    finally:
        transport.clear_to_send_lock.release()


def _send_in_order(chan: Any, build: Callable[[], Any], deadline: float) -> bool:
    """Build a message under the channel's lock and send it before paramiko can send CLOSE.
    False when the channel is closed (nothing sent); ``build`` may return None (nothing to send)."""
    with _send_lock(chan.transport, deadline) as active:
        if not active:
            return False
        with chan.lock:
            if chan.closed:
                return False
            message = build()
        if message is not None:
            chan.transport._send_message(message)
        return True


def send_eof(chan: Any, timeout: float = KEX_WAIT_S) -> None:
    """End the command's input (as paramiko's ``shutdown_write``), never after the channel closed."""
    _send_in_order(chan, chan._send_eof, time.monotonic() + timeout)


def _data_message(chan: Any, chunk: bytes) -> Any:
    import paramiko
    from paramiko.common import cMSG_CHANNEL_DATA

    message = paramiko.Message()
    message.add_byte(cMSG_CHANNEL_DATA)
    message.add_int(chan.remote_chanid)
    message.add_string(chunk)
    return message


def send_input(chan: Any, data: bytes, stall_s: float = STALL_S) -> None:
    """Send ``data`` as the command's input within sshd's window. InputClosed when the command's
    side closed first (the caller still reads its exit status); TimeoutError when the command
    took none of it for ``stall_s`` seconds."""
    view = memoryview(data)
    deadline = time.monotonic() + stall_s
    while view:
        taken: list[int] = []

        def build(rest: memoryview = view, taken: list[int] = taken) -> Any:
            size = min(len(rest), chan.out_window_size, chan.out_max_packet_size - HEADROOM)
            if chan.eof_sent or size <= 0:
                return None
            chan.out_window_size -= size
            taken.append(size)
            return _data_message(chan, bytes(rest[:size]))

        if not _send_in_order(chan, build, deadline) or chan.eof_sent:
            raise InputClosed()
        if taken:
            view, deadline = view[taken[0]:], time.monotonic() + stall_s
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"the command took none of its input for {stall_s:g} s")
        with chan.lock:  # wait for sshd to open the window (WINDOW_ADJUST) or close the channel
            if not chan.closed and chan.out_window_size == 0:
                chan.out_buffer_cv.wait(0.1)
