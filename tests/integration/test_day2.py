"""Day-2 changes during a course (issue 16 item 4), on a real 1 hub + 1 node lab: a student's
server and the kernel running in it survive an admin adding a user and changing the culler's
timeout in the site file and re-applying. The hub is restarted (its config lives in its image),
the server and the kernel are not: the hub runs with cleanup_servers = False and its Swarm
service is updated in place. A change of the user lists alone restarts nothing at all: it goes
through the hub's REST API (actions/hub_users.py).

Brings its own lab (the shared one is 1+2+1 and other modules expect it unchanged):
pytest -m lab tests/integration/test_day2.py
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from hubwizard.core.config import load_site
from hubwizard.lab import oidc as lab_oidc
from tests.integration.lab_fixture import docker_client_or_skip, unique_name
from tests.lab_web import LabHub, oidc_login, session
from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]

STUDENT = "student1"
LEAVER = "student2"  # logs in once, then leaves the course (removed from allowed_users)


def _apply(site_path: Path, what: str) -> str:
    t0 = time.monotonic()
    res = hubwizard("apply", "-c", str(site_path), "--yes")
    print(f"\n[time] {what}: {time.monotonic() - t0:.0f} s, exit {res.returncode}")
    assert res.returncode == 0, f"{what} failed:\n{res.stdout[-5000:]}\n{res.stderr[-2000:]}"
    return res.stdout + res.stderr


class Student:
    """A student's browser-like session: the hub API with the login cookie and its XSRF token
    (the end-to-end check's token may touch its own test user only)."""

    def __init__(self, hub: LabHub, name: str) -> None:
        self.hub, self.name, self.s = hub, name, session(hub)

    def login(self, next_path: str = "/hub/home") -> Any:
        page = oidc_login(self.s, self.hub, self.name, next_path)
        assert page.status_code == 200, f"login of {self.name}: {page.status_code} at {page.url}"
        return page

    def api(self, method: str, path: str) -> Any:
        xsrf = self.s.cookies.get("_xsrf", path="/hub/") or self.s.cookies.get("_xsrf") or ""
        headers = {"X-XSRFToken": xsrf, "Referer": f"{self.hub.url}/hub/home"}
        return self.s.request(method, f"{self.hub.url}/hub/api{path}", headers=headers, timeout=120)

    def start(self) -> None:
        reply = self.api("POST", f"/users/{self.name}/server")
        assert reply.status_code in (201, 202), f"start {self.name}: {reply.status_code} {reply.text[:300]}"
        _wait(f"{self.name}'s server", self.ready)

    def ready(self) -> bool:
        reply = self.api("GET", f"/users/{self.name}")
        server = (reply.json().get("servers") or {}).get("") if reply.status_code == 200 else None
        return bool(server and server.get("ready"))


def _wait(what: str, probe: Any, timeout: float = 420) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, AssertionError, ValueError):
            value = None
        if value:
            return value
        time.sleep(3)
    raise AssertionError(f"{what}: no answer in {timeout:.0f} s")


# The user's server's own REST API, from inside its container with the server's token (the
# hub grants it access to this one server): POST starts a kernel, GET lists kernels.
KERNELS = ("python3 -c 'import json, os, sys, urllib.request as u; "
           "url = os.environ[\"JUPYTERHUB_SERVICE_URL\"].replace(\"0.0.0.0\", \"127.0.0.1\") + \"api/kernels\"; "
           "req = u.Request(url, method=sys.argv[1], data=b\"{}\" if sys.argv[1] == \"POST\" else None, "
           "headers={\"Authorization\": \"token \" + os.environ[\"JUPYTERHUB_API_TOKEN\"]}); "
           "print(u.urlopen(req, timeout=60).read().decode())'")


def _container(site_path: Path, user: str) -> str:
    """The id of the container running ``user``'s server, on whichever host runs it."""
    find = ("for c in $(docker ps -q); do docker inspect $c --format '{{.Id}} {{range .Config.Env}}{{.}} {{end}}'; "
            f"done | grep 'JUPYTERHUB_USER={user} ' | cut -d' ' -f1")
    for host in ("node1", "hub"):
        found = _on_host(site_path, host, find)
        if found:
            return f"{host} {found.split()[0]}"
    raise AssertionError(f"no container runs {user}'s server")


def _kernels(site_path: Path, where: str, method: str) -> Any:
    host, container = where.split()
    return json.loads(_on_host(site_path, host, f"docker exec {container} {KERNELS} {method}"))


def _edit_site(path: Path) -> None:
    """What an admin does mid-course: let one more person in and one out, change the culler's
    timeout, reserve resources, offer a second image."""
    text = path.read_text()
    text, n = re.subn(r"^allowed_users = \[(.*?)\]", lambda m: "allowed_users = [{}]".format(", ".join(
        [x for x in m[1].split(", ") if x != f'"{LEAVER}"'] + [f'"{lab_oidc.OUTSIDER}"'])), text, count=1, flags=re.M)
    assert n == 1, text
    text = text.replace("[hub]\n", "[hub]\nidle_timeout = 1800\ncpu_guarantee = 0.25\nmem_guarantee = \"256M\"\n", 1)
    # a second choice in the spawn form (the lab's registry holds one user image: the same one)
    text, n = re.subn(r"^(singleuser = (\"[^\"]+\"))$", r'\1\n[images.profiles]\n"Same again" = \2', text,
                      count=1, flags=re.M)
    assert n == 1, text
    path.write_text(text)


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory: pytest.TempPathFactory):
    docker_client_or_skip()
    work = tmp_path_factory.mktemp("day2")
    name = unique_name("d2-")
    site_path = work / "site.toml"
    try:
        up = hubwizard("lab", "up", "--name", name, "--nodes", "1", "-o", str(site_path), timeout=1500)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        _apply(site_path, "first apply (1 hub + 1 node)")
        yield site_path
    finally:
        hubwizard("lab", "down", "--name", name, timeout=600)


def test_a_running_server_and_its_kernel_survive_a_user_list_and_culler_change(lab_site: Path) -> None:
    hub = LabHub(lab_site, load_site(lab_site))
    assert oidc_login(session(hub), hub, lab_oidc.OUTSIDER).status_code == 403  # not allowed yet

    student = Student(hub, STUDENT)
    student.login()
    student.start()
    where = _container(lab_site, STUDENT)
    kernel = _kernels(lab_site, where, "POST")["id"]
    assert kernel in {k["id"] for k in _kernels(lab_site, where, "GET")}

    Student(hub, LEAVER).login()  # the hub's database now knows them
    service_before = _on_host(lab_site, "hub", _SERVICE)
    _edit_site(lab_site)
    _apply(lab_site, "re-apply after the day-2 change")

    hub = LabHub(lab_site, load_site(lab_site))
    # the same container (never restarted), the same kernel in it, and the hub still knows the server
    assert _container(lab_site, STUDENT) == where
    assert kernel in {k["id"] for k in _kernels(lab_site, where, "GET")}, "the kernel was lost"
    assert _wait("the hub sees the student's server", student.ready)
    # the hub's service was updated (a new image, a new task), not removed and created again
    service_after = _on_host(lab_site, "hub", _SERVICE)
    print(f"\n[day2] jupyterhub service before: {service_before}; after: {service_after}")
    assert service_after.split()[0] == service_before.split()[0] and service_after != service_before
    # the change itself took effect: the newly allowed user logs in, and meets the spawn form
    newcomer = Student(hub, lab_oidc.OUTSIDER)
    form = newcomer.login("/hub/spawn")
    assert 'name="image"' in form.text and "Same again" in form.text and "Default" in form.text, form.text[:2000]
    # and the one removed from the list is refused, though the hub's database knows them
    assert oidc_login(session(hub), hub, LEAVER).status_code == 403
    # a server started now carries the reservations beside the limits
    newcomer.start()
    specs = _on_host(lab_site, "hub", _RESOURCES)
    mine = next(line for line in specs.splitlines() if f"JUPYTERHUB_USER={lab_oidc.OUTSIDER} " in line)
    resources = json.loads(mine.split("|", 1)[1])
    print(f"\n[day2] {lab_oidc.OUTSIDER}'s service resources: {resources}")
    assert resources["Reservations"] == {"NanoCPUs": 250_000_000, "MemoryBytes": 256 * 2**20}, resources
    assert resources["Limits"]["MemoryBytes"] == 2 * 2**30, resources


_HUB_CONTAINER = ("c=$(docker ps -q --filter label=com.docker.swarm.service.name=jupyterhub); "
                  "docker inspect --format '{{.Id}} {{.State.StartedAt}}' $c")


def _lists(path: Path) -> tuple[list[str], list[str]]:
    site = load_site(path)
    return list(site.hub.admin_users), list(site.hub.allowed_users)


def _set_lists(path: Path, admins: list[str], allowed: list[str]) -> None:
    text = path.read_text()
    for key, names in (("admin_users", admins), ("allowed_users", allowed)):
        text, n = re.subn(rf"^{key} = \[.*?\]", f"{key} = [{', '.join(json.dumps(x) for x in names)}]", text,
                          count=1, flags=re.M)
        assert n == 1, text
    path.write_text(text)


def test_a_user_list_change_goes_through_the_hub_api_without_a_restart(lab_site: Path) -> None:
    """Add a user and make one admin, re-apply: the plan says the hub API does it with no
    restart, the hub's container is the very same (id, start time), the student's kernel is
    still there, the new user logs in and gets a token, the new admin is admin."""
    hub = LabHub(lab_site, load_site(lab_site))
    student = Student(hub, STUDENT)
    student.login()
    if not student.ready():
        student.start()
    where = _container(lab_site, STUDENT)
    kernels = _kernels(lab_site, where, "GET") or [_kernels(lab_site, where, "POST")]
    kernel = kernels[0]["id"]

    admins, allowed = _lists(lab_site)
    newcomer = next(u for u in lab_oidc.USERS if u not in admins and u not in allowed)
    assert oidc_login(session(hub), hub, newcomer).status_code == 403  # not allowed yet
    container_before = _on_host(lab_site, "hub", _HUB_CONTAINER)
    service_before = _on_host(lab_site, "hub", _SERVICE)
    _set_lists(lab_site, [*admins, STUDENT], [*allowed, newcomer])

    plan = hubwizard("plan", "-c", str(lab_site), "--diff")
    shown = plan.stdout[plan.stdout.find("== hub-users"):]
    print(f"\n[day2] plan --diff (from hub-users on):\n{shown[:800]}\n...\n{plan.stdout[-1500:]}")
    # only the users step would change, and it says how: through the hub API, no restart
    assert "plan: 1 would change" in plan.stdout and "through the hub API, no restart" in shown, plan.stdout[-6000:]
    assert f"\n+{newcomer}\n" in plan.stdout and f"\n+{STUDENT} (admin)\n" in plan.stdout, plan.stdout[-6000:]
    _apply(lab_site, "re-apply after adding a user and an admin")

    # nothing restarted: the same hub container, started at the same time, the same service version
    container_after = _on_host(lab_site, "hub", _HUB_CONTAINER)
    print(f"\n[day2] hub container before: {container_before}; after: {container_after}")
    assert container_after == container_before
    assert _on_host(lab_site, "hub", _SERVICE) == service_before
    assert _container(lab_site, STUDENT) == where
    assert kernel in {k["id"] for k in _kernels(lab_site, where, "GET")}, "the kernel was lost"
    # the change took effect in the running hub: the newcomer logs in and gets a token ...
    user = Student(hub, newcomer)
    user.login()
    reply = user.api("POST", f"/users/{newcomer}/tokens")
    assert reply.status_code == 201 and reply.json().get("token"), f"{reply.status_code} {reply.text[:300]}"
    assert user.api("GET", "/user").json()["name"] == newcomer
    # ... and the student is now an admin (the hub's own answer about them)
    me = student.api("GET", "/user").json()
    assert me["admin"] is True, me
    # the lists a restart would read are the new ones
    listed = json.loads(_on_host(lab_site, "hub", "cat $(docker volume inspect --format '{{.Mountpoint}}' "
                                                  "jupyterhub-data)/hubwizard-users.json"))
    assert newcomer in listed["allowed_users"] and STUDENT in listed["admin_users"], listed


_RESOURCES = ("for s in $(docker service ls -q); do docker service inspect $s --format "
              "'{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{.}} {{end}}|{{json .Spec.TaskTemplate.Resources}}'; done")


_SERVICE = "docker service inspect jupyterhub --format '{{.ID}} {{.Version.Index}} {{.Spec.TaskTemplate.ContainerSpec.Image}}'"


def _on_host(site_path: Path, host: str, command: str) -> str:
    """A command's output on a lab machine, through hubwizard's own SSH connection."""
    from hubwizard.remote.connections import Connections
    from hubwizard.session import open_site

    opened = open_site(site_path, prompt=None)
    conns = Connections(opened.site, opened.secrets)
    try:
        res = conns.get(host).run(command, sudo=True)
        assert res.ok, res.output
        return res.stdout.strip()
    finally:
        conns.close()


# --------------------------------------------------------------------------- upgrade-db

OLD_JUPYTERHUB = "jupyterhub==4.1.*"  # the major version before the lab's (5.*)


def _sh(client: Any, image: str, script: str, volume: str) -> tuple[int, str]:
    """Run ``script`` in ``image`` with the hub's data volume mounted, as the hub-service step does."""
    container = client.containers.run(image, ["sh", "-c", script], entrypoint=[], detach=True, network_mode="none",
                                      volumes={volume: {"bind": "/srv/jupyterhub/data", "mode": "rw"}})
    try:
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


ALEMBIC = ("python3 -c \"import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("
           "'select version_num from alembic_version').fetchone()[0])\" ")


def test_a_new_jupyterhub_upgrades_the_database_after_a_timestamped_copy() -> None:
    """A database made by JupyterHub 4 is upgraded by the JupyterHub 5 image with the script the
    hub-service step runs before the new hub starts; the copy it keeps still has the old schema."""
    import io

    from hubwizard.actions.hub_service import DB, UPGRADE_SCRIPT
    from hubwizard.lab import images as lab_images

    client = docker_client_or_skip()
    new = lab_images.ensure(client, ["jupyterhub"], lambda _m: None)["jupyterhub"]
    old = f"{new.split(':')[0]}-old:{unique_name('jh4-')}"
    dockerfile = f"FROM {new}\nRUN /opt/jupyterhub/bin/pip install --no-cache-dir -q '{OLD_JUPYTERHUB}'\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=old, rm=True, network_mode="host")
    volume = client.volumes.create(unique_name("d2db-"))
    try:
        code, out = _sh(client, old, "jupyterhub --version && python3 -c \"from jupyterhub import orm; "
                        f"orm.new_session_factory('sqlite:///{DB}')\" && {ALEMBIC}{DB}", volume.name)
        assert code == 0, out
        old_version, old_schema = out.split()[0], out.split()[-1]
        assert old_version.startswith("4."), out

        code, out = _sh(client, new, UPGRADE_SCRIPT, volume.name)
        assert code == 0, out
        assert "database copied to" in out, out
        copy = next(w for w in out.split() if ".before-upgrade-" in w)
        code, after = _sh(client, new, f"jupyterhub --version; {ALEMBIC}{DB}; {ALEMBIC}{copy}; ls {Path(DB).parent}",
                          volume.name)
        assert code == 0, after
        new_version, new_schema, copy_schema = after.split()[:3]
        print(f"\n[upgrade-db] JupyterHub {old_version} -> {new_version}: schema {old_schema} -> {new_schema}, "
              f"copy {Path(copy).name} kept at {copy_schema}")
        assert new_version.startswith("5.") and new_schema != old_schema and copy_schema == old_schema
    finally:
        volume.remove(force=True)
        client.images.remove(old, force=True)
