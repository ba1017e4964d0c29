"""LAB STAND-IN for the classic Swarm manager (`swarm manage`, 2015-2016), run inside a container
on the hub where the swarm image cannot be pulled ([classic] lab_stand_ins = true).

Why it exists: the lab has no Docker Hub, so no `swarm` image; without an aggregating manager a
user's server could not be shown running on a node through `docker -H tcp://HUB:4000`. This
program serves the Docker API on HUB:4000 over TLS (clients of the site CA only, like the
manager) and does the part of `swarm manage` that JupyterHub's DockerSpawner and the admin's
`docker -H :4000 ps -a` use, talking to each node's real dockerd with the manager's certificate:

- `GET /containers/json`: every node's containers, named ``/NODE/NAME`` as Swarm names them;
- `POST /containers/create`: placed on the node an ``constraint:node==NAME`` variable names,
  else on the node with the fewest running containers (Swarm's "spread");
- `/containers/ID...`: sent to the node that holds the container (`inspect` gains Swarm's
  ``Node`` field);
- `/images/NAME/json` and pulls: every node; `/_ping`, `/version`: the first node;
  `/info`: the manager's own view (Role, Strategy, the node list, as Swarm's SystemStatus).

Everything else answers 501 saying the stand-in does not serve it. Discovery is a static list
(NODES=name=ip:port,...), like `swarm manage nodes://...`: no Consul, no `swarm join`.

Replication (`swarm manage --replication`, PEERS=hub=ip:4000,node1=ip:4000 and SELF=name): the
real managers elect their primary with a lock in Consul; the stand-ins cannot (the lab's Consul
is a static page), so each polls the others' ``/_role`` every 2 s instead: a live primary stays
primary; with none alive, the first live manager of the list takes over. A replica serves the
API itself (the real one proxies to the primary) and says ``Role: replica, Primary: ADDR``.
Standard library only: it runs in the hub's base image, and this file is also imported by
hubwizard's unit tests for its pure parts.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PASS_HEADERS = ("content-type", "api-version", "docker-experimental", "ostype", "server")
_LOCK = threading.Lock()
_PLACED: dict[str, str] = {}  # container id -> node, for containers created here
_ROLE: dict[str, str] = {"role": "primary", "primary": ""}  # this manager's replication state
NO_PRIMARY = "No elected primary cluster manager"


# ----------------------------------------------------------------------- pure parts


def parse_nodes(text: str) -> dict[str, str]:
    """``node1=10.0.0.11:2376,node2=10.0.0.12:2376`` -> {name: "ip:port"}, in that order."""
    nodes = {}
    for part in text.split(","):
        name, _, addr = part.strip().partition("=")
        if name and addr:
            nodes[name] = addr
    return nodes


def constraint_node(env: list[str] | None) -> str | None:
    """The node a ``constraint:node==NAME`` environment variable asks for (Swarm's syntax)."""
    for item in env or []:
        match = re.fullmatch(r"constraint:node==(.+)", item)
        if match:
            return match.group(1)
    return None


def spread(counts: dict[str, int]) -> str:
    """The node with the fewest running containers (the first listed on a tie)."""
    return min(counts, key=lambda name: (counts[name], list(counts).index(name)))


def prefixed(containers: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    """A node's `containers/json` entries with Swarm's names: ``/NODE/NAME``."""
    return [{**c, "Names": [f"/{node}{n}" for n in c.get("Names") or []]} for c in containers]


def split_ref(ref: str, nodes: dict[str, str]) -> tuple[str | None, str]:
    """``node1/jupyter-x`` -> ("node1", "jupyter-x"); a bare id or name -> (None, ref)."""
    node, sep, rest = ref.partition("/")
    return (node, rest) if sep and node in nodes else (None, ref)


def elect(me: str, peers: dict[str, str], seen: dict[str, str | None], current: dict[str, str]) -> dict[str, str]:
    """This manager's next role from what the other managers said of themselves (``seen``: name ->
    "primary" | "replica", None when it did not answer): a live primary keeps it (the earliest
    listed, should two claim it); with none alive the first live manager of ``peers`` takes over."""
    live = [n for n in peers if n == me or seen.get(n)]
    claims = [n for n in live if n != me and seen.get(n) == "primary"]
    if current["role"] == "primary" and not [n for n in claims if live.index(n) < live.index(me)]:
        return {"role": "primary", "primary": peers[me]}
    if claims:
        return {"role": "replica", "primary": peers[claims[0]]}
    if live[0] == me:
        return {"role": "primary", "primary": peers[me]}
    return {"role": "replica", "primary": ""}


def system_status(nodes: dict[str, str], healthy: dict[str, bool], containers: dict[str, int],
                  role: dict[str, str] | None = None) -> list[list[str]]:
    """What `docker info` shows of a Swarm manager: role (and its primary when a replica),
    strategy, and each node's state."""
    role = role or {"role": "primary", "primary": ""}
    out = [["Role", role["role"]]] + ([["Primary", role["primary"]]] if role["role"] == "replica" else [])
    out += [["Strategy", "spread"], ["Filters", "constraint"], ["Nodes", str(len(nodes))]]
    for name, addr in nodes.items():
        out += [[f" {name}", addr], ["  └ Status", "Healthy" if healthy.get(name) else "Unhealthy"],
                ["  └ Containers", str(containers.get(name, 0))]]
    return out


# ----------------------------------------------------------------------- talking to the nodes


class Nodes:
    """The nodes' dockerd endpoints, reached with the manager's client certificate."""

    def __init__(self, nodes: dict[str, str], certs: str) -> None:
        self.nodes = nodes
        self.tls = ssl.create_default_context(cafile=f"{certs}/ca.pem")
        self.tls.load_cert_chain(f"{certs}/manager-cert.pem", f"{certs}/manager-key.pem")

    def call(self, node: str, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        host, _, port = self.nodes[node].rpartition(":")
        conn = http.client.HTTPSConnection(host, int(port), context=self.tls, timeout=600)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, node: str, path: str) -> Any:
        status, _, data = self.call(node, "GET", path)
        return json.loads(data) if status == 200 else None

    def each(self, path: str) -> dict[str, Any]:
        """GET on every node: {node: decoded JSON, or None when it did not answer 200}."""
        out = {}
        for node in self.nodes:
            try:
                out[node] = self.json(node, path)
            except (OSError, ValueError):
                out[node] = None
        return out

    def holder(self, ref: str) -> str | None:
        """The node holding container ``ref`` (an id, an id prefix or a name)."""
        with _LOCK:
            for cid, node in _PLACED.items():
                if cid.startswith(ref):
                    return node
        quoted = urllib.parse.quote(ref, safe="")
        for node, found in self.each(f"/containers/{quoted}/json").items():
            if found:
                return node
        return None


# ----------------------------------------------------------------------- the API


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    nodes: Nodes  # set by serve()

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self.route()

    do_POST = do_DELETE = do_PUT = do_HEAD = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        print(f"{self.address_string()} {format % args}", flush=True)

    def reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            if key in PASS_HEADERS:
                self.send_header(key, value)
        if "content-type" not in (headers or {}):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def reply_json(self, status: int, value: Any) -> None:
        self.reply(status, json.dumps(value).encode())

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(self, node: str, path: str, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-registry-auth")}
        status, got, data = self.nodes.call(node, self.command, path, body, headers)
        self.reply(status, data, got)

    def route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        version = re.match(r"^/v[0-9.]+", url.path)
        path = url.path[version.end():] if version else url.path
        body = self.body()
        try:
            self.dispatch(path, url, body)
        except (OSError, http.client.HTTPException) as exc:
            self.reply_json(500, {"message": f"swarm stand-in: a node did not answer: {exc}"})

    def dispatch(self, path: str, url: urllib.parse.SplitResult, body: bytes) -> None:
        first = next(iter(self.nodes.nodes))
        with _LOCK:
            role = dict(_ROLE)
        if path == "/_role":
            self.reply_json(200, role)
        elif role["role"] == "replica" and not role["primary"]:
            self.reply_json(500, {"message": NO_PRIMARY})
        elif path in ("/_ping", "/version"):
            self.forward(first, self.path, body)
        elif path == "/info":
            self.info()
        elif path == "/containers/json":
            listed = self.nodes.each(f"/containers/json?{url.query}")
            self.reply_json(200, [c for node, cs in listed.items() for c in prefixed(cs or [], node)])
        elif path == "/containers/create":
            self.create(url, body)
        elif match := re.match(r"^/containers/([^/]+)(/.*)?$", path):
            self.container(urllib.parse.unquote(match.group(1)), match.group(2) or "", url, body)
        elif path == "/images/create":
            self.pull(body)
        elif match := re.match(r"^/images/(.+)/json$", path):
            found = self.nodes.each(f"/images/{match.group(1)}/json")
            if all(found.values()):
                self.reply_json(200, next(iter(found.values())))
            else:
                missing = sorted(n for n, v in found.items() if not v)
                self.reply_json(404, {"message": f"No such image on {', '.join(missing)}"})
        else:
            self.reply_json(501, {"message": f"the lab's stand-in Swarm manager does not serve {self.command} {path}"})

    def info(self) -> None:
        listed = self.nodes.each("/containers/json")
        counts = {n: len(cs or []) for n, cs in listed.items()}
        healthy = {n: cs is not None for n, cs in listed.items()}
        self.reply_json(200, {"ID": "hubwizard-lab-swarm-stand-in", "Name": os.uname().nodename,
                              "ServerVersion": "swarm/stand-in", "OperatingSystem": "hubwizard lab stand-in",
                              "Containers": sum(counts.values()), "ContainersRunning": sum(counts.values()),
                              "SystemStatus": system_status(self.nodes.nodes, healthy, counts, dict(_ROLE))})

    def create(self, url: urllib.parse.SplitResult, body: bytes) -> None:
        spec = json.loads(body or b"{}")
        wanted = constraint_node(spec.get("Env"))
        if wanted is not None and wanted not in self.nodes.nodes:
            self.reply_json(400, {"message": f"unable to find a node that satisfies the constraint node=={wanted}"})
            return
        if wanted is None:
            counts = {n: len(cs) for n, cs in self.nodes.each("/containers/json").items() if cs is not None}
            if not counts:
                self.reply_json(500, {"message": "no node answers: no healthy node to place the container on"})
                return
            wanted = spread(counts)
        status, got, data = self.nodes.call(wanted, "POST", f"/containers/create?{url.query}", body,
                                            {"Content-Type": "application/json"})
        if status == 201:
            with _LOCK:
                _PLACED[json.loads(data)["Id"]] = wanted
        self.reply(status, data, got)

    def container(self, ref: str, rest: str, url: urllib.parse.SplitResult, body: bytes) -> None:
        node, ref = split_ref(ref, self.nodes.nodes)
        node = node or self.nodes.holder(ref)
        if node is None:
            self.reply_json(404, {"message": f"No such container: {ref}"})
            return
        path = f"/containers/{urllib.parse.quote(ref, safe='')}{rest}" + (f"?{url.query}" if url.query else "")
        if rest == "/json" and self.command == "GET":
            status, got, data = self.nodes.call(node, "GET", path)
            if status == 200:
                addr = self.nodes.nodes[node]
                data = json.dumps({**json.loads(data), "Node": {"Name": node, "Addr": addr,
                                                                "IP": addr.rpartition(":")[0]}}).encode()
            self.reply(status, data, got)
            return
        self.forward(node, path, body)

    def pull(self, body: bytes) -> None:
        """Swarm pulls on every node; the streams are sent one after the other."""
        out, worst = b"", 200
        for node in self.nodes.nodes:
            status, _, data = self.nodes.call(node, "POST", self.path, body,
                                              {k: v for k, v in self.headers.items() if k.lower() == "x-registry-auth"})
            out += data
            worst = status if status != 200 else worst
        self.reply(worst, out)


def peer_role(tls: ssl.SSLContext, addr: str) -> str | None:
    """What another manager says it is ("primary" | "replica"); None when it does not answer."""
    host, _, port = addr.rpartition(":")
    conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=3)
    try:
        conn.request("GET", "/_role")
        resp = conn.getresponse()
        return json.loads(resp.read()).get("role") if resp.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def replicate(me: str, peers: dict[str, str], tls: ssl.SSLContext) -> None:
    """The stand-in's election loop (the real manager's is a Consul lock): every 2 s."""
    with _LOCK:
        _ROLE.update({"role": "replica", "primary": ""})
    while True:
        seen = {name: peer_role(tls, addr) for name, addr in peers.items() if name != me}
        with _LOCK:
            before = dict(_ROLE)
            _ROLE.update(elect(me, peers, seen, before))
            if before != _ROLE:
                print(f"replication: {before} -> {_ROLE} (others: {seen})", flush=True)
        threading.Event().wait(2)


def serve() -> None:
    certs = os.environ.get("CERTS", "/certs")
    Handler.nodes = Nodes(parse_nodes(os.environ["NODES"]), certs)
    bind = os.environ.get("BIND_IP") or os.environ["HUB_IP"]
    peers, me = parse_nodes(os.environ.get("PEERS", "")), os.environ.get("SELF", "")
    if me in peers and len(peers) > 1:
        threading.Thread(target=replicate, args=(me, peers, Handler.nodes.tls), daemon=True).start()
    server = ThreadingHTTPServer((bind, int(os.environ.get("PORT", "4000"))), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(f"{certs}/manager-cert.pem", f"{certs}/manager-key.pem")
    tls.load_verify_locations(f"{certs}/ca.pem")
    tls.verify_mode = ssl.CERT_REQUIRED  # like `swarm manage --tlsverify`: site CA clients only
    server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print(f"swarm stand-in on {server.server_address}, nodes {Handler.nodes.nodes}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve()
