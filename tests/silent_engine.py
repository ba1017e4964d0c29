"""A Docker API endpoint on a unix socket that answers some calls and never answers others.

Why: Debian's dockerd 20.10.24 deadlocked in the lab's test runs: `docker ps` answered, `docker
network ls` never did. Waiting for the real engine to deadlock again is not a test, so this
server reproduces what a client sees of it (the connection is accepted, the reply never comes)
with the real Docker SDK on the other end. Point DOCKER_HOST at ``unix://PATH``.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

VERSION = {"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"}


def _container(lab: str) -> dict:
    return {
        "Id": "c0ffee" * 10 + "abcd",
        "Names": [f"/hwlab-{lab}-hub"],
        "Image": "hubwizard-lab/machine",
        "State": "running",
        "Status": "Up",
        "Labels": {"io.hubwizard.lab": lab, "io.hubwizard.lab.role": "hub", "io.hubwizard.lab.host": "hub"},
    }


class SilentEngine:
    """Answers GET /version, /_ping, /containers/json and /containers/ID/json (one container of
    lab ``lab``), /volumes and /networks; every request whose path (or "METHOD path") starts with
    one of ``hang`` (e.g. "/networks", "DELETE /containers/") is accepted and never answered.
    ``hang=("",)`` hangs everything."""

    def __init__(self, path: Path, hang: tuple[str, ...] = ("/networks",), lab: str = "silent") -> None:
        self.path, self.hang, self.lab = path, hang, lab
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn.makefile("rb") as reader:
            while True:
                line = reader.readline().decode(errors="replace")
                if not line:
                    return
                method, target = line.split()[:2]
                length = self._headers(reader)
                reader.read(length)
                path = "/" + target.split("?")[0].split("/", 2)[-1] if target.startswith("/v1.") else target
                path = path.split("?")[0]
                self.seen.append(f"{method} {path}")
                if any(path.startswith(p) or f"{method} {path}".startswith(p) for p in self.hang):
                    self.held.append(conn)  # accepted, never answered: what the deadlock looks like
                    return
                conn.sendall(self._reply(path))

    @staticmethod
    def _headers(reader) -> int:
        length = 0
        while True:
            header = reader.readline().decode(errors="replace").strip()
            if not header:
                return length
            name, _, value = header.partition(":")
            if name.lower() == "content-length":
                length = int(value.strip() or 0)

    def _reply(self, path: str) -> bytes:
        if path == "/_ping":
            body = b"OK"
        elif path == "/version":
            body = json.dumps(VERSION).encode()
        elif path == "/containers/json":
            body = json.dumps([_container(self.lab)]).encode()
        elif path.startswith("/containers/") and path.endswith("/json"):
            found = _container(self.lab)
            found.update(Name=found["Names"][0], Config={"Labels": found["Labels"]},
                         State={"Status": "running"}, NetworkSettings={"Networks": {}})
            body = json.dumps(found).encode()
        elif path == "/volumes":
            body = json.dumps({"Volumes": [], "Warnings": None}).encode()
        elif path == "/networks":
            body = b"[]"
        else:
            head = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n"
            return head + b'{"message": "not found"}'
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body
