"""The Docker SDK, spoken through our own SSH connection.

docker-py's ``ssh://`` support opens a second SSH connection with its own host-key and
config rules. Instead we run ``docker system dial-stdio`` on a channel of the
connection the engine already holds (what the docker CLI itself does over SSH), so a
host has one connection, one host-key policy, one sudo rule. Those channels count against
sshd's MaxSessions like commands do, so they are opened under the transport's channel budget,
and a pool's idle channel is closed when another piece of work waits for a free one.
"""

from __future__ import annotations

import contextlib
import queue
import shlex
from typing import Any

import docker
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
from docker.transport.basehttpadapter import BaseHTTPAdapter
from urllib3.exceptions import ProtocolError
from urllib3.util.retry import Retry

from hubwizard.remote.transport import LocalTransport, SshTransport, Transport, _sudo_refused, _sudo_wrap

API_VERSION = "1.41"  # Docker 20.10, the oldest engine we support; newer engines accept it


class _ChannelConnection(urllib3.connection.HTTPConnection):
    def __init__(self, ssh: SshTransport, command: str, timeout: float, password: str | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.ssh, self.command, self._timeout, self._password = ssh, command, timeout, password

    def connect(self) -> None:
        chan = self.ssh.exec_session("the Docker API", self.command)
        chan.settimeout(self._timeout)
        if self._password is not None:
            # the sudo wrapper's shell reads this line before dial-stdio starts relaying HTTP.
            chan.sendall((self._password + "\n").encode())
        self.sock = chan


class _ChannelPool(urllib3.connectionpool.HTTPConnectionPool):
    scheme = "ssh"

    def __init__(self, ssh: SshTransport, command: str, timeout: float, maxsize: int, password: str | None) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self.ssh, self.command, self._timeout, self._password = ssh, command, timeout, password
        ssh.budget.add_reclaimer(self.drop_idle)

    def drop_idle(self) -> bool:
        """Close one idle pooled channel so waiting work gets its slot; True if one was closed."""
        taken: list[Any] = []
        dropped = False
        idle = self.pool  # None once the pool is closed
        try:
            while idle is not None:
                taken.append(idle.get(block=False))
        except queue.Empty:
            pass
        for i, conn in enumerate(taken):
            if conn is not None and not dropped and getattr(conn, "sock", None) is not None:
                conn.close()
                taken[i], dropped = None, True
        pool = self.pool
        for conn in taken:
            if pool is not None:
                with contextlib.suppress(queue.Full):
                    pool.put(conn, block=False)
        return dropped

    def _new_conn(self):
        return _ChannelConnection(self.ssh, self.command, self._timeout, self._password)

    def _get_conn(self, timeout: float | None = None) -> Any:  # as docker-py: never call fileno() on a channel
        conn = None
        idle = self.pool
        if idle is None:
            raise urllib3.exceptions.ClosedPoolError(self, "Pool is closed.")
        with contextlib.suppress(queue.Empty):
            conn = idle.get(block=self.block, timeout=timeout)
        return conn or self._new_conn()


class _RetryUnanswered(Retry):
    """A read-only request whose channel closed before any answer is sent again on a new channel.

    A channel can end without relaying a byte: dial-stdio exited, or the SSH connection under it
    was lost and is made again (seen in CI as "Remote end closed connection without response"
    on verify's first checks; that drop's own cause is fixed in remote/channel_io.py). Only
    GET/HEAD are repeated, and only for that error: a timeout or a refused channel is reported at
    once, a POST never runs twice."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is not None and not isinstance(error, ProtocolError):
            raise error.with_traceback(_stacktrace)
        return super().increment(method, url, response, error, _pool, _stacktrace)


UNANSWERED_RETRIES = 2


class _ChannelAdapter(BaseHTTPAdapter):
    __attrs__ = [*requests.adapters.HTTPAdapter.__attrs__, "pool"]

    def __init__(self, ssh: SshTransport, command: str, timeout: float, password: str | None = None) -> None:
        super().__init__()
        # increment() lets only ProtocolError through, so read is the one count that applies
        self.max_retries = _RetryUnanswered(total=UNANSWERED_RETRIES, read=UNANSWERED_RETRIES,
                                            allowed_methods=frozenset({"GET", "HEAD"}), backoff_factor=0.5)
        self.pool = _ChannelPool(ssh, command, timeout, 10, password)

    def get_connection(self, url, proxies=None):
        return self.pool

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.pool

    def close(self) -> None:
        super().close()
        self.pool.close()


class Client(docker.DockerClient):
    """A DockerClient that closes its channels at the end of a ``with`` block."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def client_for(transport: Transport, *, sudo: bool = True, timeout: float = 120) -> Client:
    """The one way to a host's Docker API: a client talking to the engine of ``transport``'s host
    (``with client_for(t) as client:`` closes it afterwards)."""
    if isinstance(transport, LocalTransport):
        return Client(base_url="unix:///var/run/docker.sock", version=API_VERSION, timeout=timeout)
    if not isinstance(transport, SshTransport):
        raise TypeError(f"no Docker API for {type(transport).__name__}")
    command, password = "docker system dial-stdio", None
    if sudo and transport.user != "root":
        password = transport.sudo_password
        refused = _sudo_refused(transport, command, True)
        if refused is not None:
            raise docker.errors.DockerException(f"{transport.name}: sudo refused: {refused.output}")
        command = _sudo_wrap(command, transport.user, True, password)[0]
    return _channel_client(transport, command, timeout, password)


def _channel_client(transport: SshTransport, command: str, timeout: float, password: str | None) -> Client:
    """A client whose HTTP connections are channels running ``command`` (dial-stdio)."""
    client = Client(base_url="ssh://unused", version=API_VERSION, use_ssh_client=True, timeout=timeout)
    adapter = _ChannelAdapter(transport, command, timeout, password)
    client.api._custom_adapter = adapter
    client.api.mount("http+docker://ssh", adapter)
    return client


def quote_cmd(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
