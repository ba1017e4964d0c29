"""A ProxyCommand from ~/.ssh/config run as ssh runs it: ``/bin/sh -c "exec COMMAND"`` whose
stdin and stdout are one end of a socket pair; the SSH connection speaks over the other end.

Not paramiko.ProxyCommand: it splits the line without a shell (``2>/dev/null`` or ``;`` break),
spins when the command exits, never reads its stderr (a chatty command blocks) and leaves it a
zombie. Here the command's EOF is the socket's EOF, its stderr goes to a file whose tail the
error message quotes, and closing the connection ends the process.

The command is the admin's own, from their ssh config; the only values put in it are the
site file's host name and port (``%h``/``%p``), which the site file validates."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile

from hubwizard.core.errors import UnreachableError

EXIT_WAIT_S = 2.0  # after the connection failed, how long to wait for the command's exit code


class ProxyProcess:
    """The running command and our end of its socket."""

    def __init__(self, name: str, command: str, timeout: float) -> None:
        self.name, self.command = name, command
        ours, theirs = socket.socketpair()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the process runs; close() closes it
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], stdin=theirs.fileno(), stdout=theirs.fileno(),
                                         stderr=self._err, close_fds=True)
        except OSError as exc:
            ours.close()
            self._err.close()
            raise UnreachableError(
                f"{name}: cannot start its ProxyCommand `{command}` from the ssh config: {exc.strerror}",
                fix="check the ProxyCommand line in ~/.ssh/config (or [ssh] config in the site file)",
            ) from None
        finally:
            theirs.close()
        ours.settimeout(timeout)
        self.sock = ours

    def stderr_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._err.seek(0)
            text = self._err.read().decode("utf-8", "replace").strip()
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def failure(self, what: str) -> UnreachableError:
        """Why the connection through the command failed, with the command's own words."""
        try:
            code: int | None = self.proc.wait(EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.stderr_tail()
        ended = "is still running" if code is None else f"exited with code {code}"
        return UnreachableError(
            f"{self.name}: {what} through its ProxyCommand `{self.command}` (from the ssh config); the command "
            f"{ended}" + (f", saying:\n{tail}" if tail else ", saying nothing on stderr"),
            fix="run that command by hand to see why it does not reach the host's sshd, then fix it in "
            "~/.ssh/config (or set `ProxyCommand none` for this host there)",
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self._err.close()
