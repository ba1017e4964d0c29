"""The classic track all the way to users' servers (issue 15 part 1), on the classic lab:
a student logs in over HTTPS through the lab's OpenID provider, starts a server, and the
tutorial's own check on the hub, `docker -H :4000 ps -a`, lists it as NODE/jupyter-USER on a
node whose engine really runs it, its port published on that node's internal address (issue 12,
low: never 0.0.0.0); a second student's server goes to the other node; `hubwizard verify` runs
the end-to-end check and says which checks ran on the lab's stand-ins.

The manager on :4000 is the lab's stand-in for `swarm manage` (the swarm image cannot be
pulled here); the nodes' engines, TLS, certificates, the hub, nginx, certbot and the OIDC login
are real."""

from __future__ import annotations

import time
import tomllib
import urllib.parse

import pytest

from hubwizard.core.config import load_site
from tests.integration.classic_lab import ClassicLab, classic_lab_fixture, ssh  # noqa: F401
from tests.lab_web import LabHub, oidc_login, session

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]
MANAGER = ("docker -H tcp://{ip}:4000 --tlsverify --tlscacert=/etc/docker/tls/client/ca.pem "
           "--tlscert=/etc/docker/tls/client/cert.pem --tlskey=/etc/docker/tls/client/key.pem")


def _token(lab: ClassicLab) -> str:
    return tomllib.loads(lab.site_path.with_name("classic-site.secrets.toml").read_text())["hub_api_token"]


def _wait_ready(hub: LabHub, token: str, user: str) -> None:
    got: dict = {}
    for _ in range(120):
        got = session(hub).get(f"{hub.url}/hub/api/users/{user}", headers={"Authorization": f"token {token}"},
                               timeout=60).json()
        if (got.get("servers") or {}).get("", {}).get("ready"):
            return
        time.sleep(3)
    raise AssertionError(f"{user}'s server did not become ready: {got}")


def _manager_ps(lab: ClassicLab) -> str:
    return ssh(lab, "hub", MANAGER.format(ip=lab.ip("hub")) + " ps -a").stdout


def _listed_node(ps: str, container: str) -> str | None:
    from hubwizard.actions.classic_hub import manager_listing

    found = manager_listing(ps, container)
    return found[0] if found else None


@pytest.fixture(scope="module")
def hub(classic_lab: ClassicLab) -> LabHub:
    site = load_site(classic_lab.site_path)
    if site.oauth.provider != "generic":
        pytest.skip("the classic lab logs in with the dummy login, not the lab's OpenID provider")
    return LabHub(classic_lab.site_path, site)


def _stop(s, hub: LabHub, user: str) -> None:
    """The user stops their own server, as the hub's home page does (cookie and XSRF token)."""
    xsrf = next((c.value for c in s.cookies if c.name == "_xsrf" and c.path.startswith("/hub")), "")
    s.delete(f"{hub.url}/hub/api/users/{user}/server", headers={"X-XSRFToken": xsrf,
             "Referer": f"{hub.url}/hub/home"}, timeout=120)


def _start(hub: LabHub, user: str):
    """A student logs in through the lab's OpenID provider and presses "Start My Server"."""
    s = session(hub)
    home = oidc_login(s, hub, user)
    assert home.status_code == 200 and urllib.parse.urlsplit(home.url).path == "/hub/home", home.url
    spawn = s.get(f"{hub.url}/hub/spawn", timeout=300)
    assert spawn.status_code == 200, f"{spawn.status_code} {spawn.url}"
    return s


def test_a_student_logs_in_over_https_and_their_server_runs_on_a_node(classic_lab, hub):
    token = _token(classic_lab)  # hubwizard's check token: reads users' server states
    s = _start(hub, "student1")
    try:
        _wait_ready(hub, token, "student1")
        ps = _manager_ps(classic_lab)
        print(f"\n$ docker -H :4000 ps -a (on the hub)\n{ps}")
        node = _listed_node(ps, "jupyter-student1")
        assert node in ("node1", "node2"), ps
        # that node's own engine runs it, published on the node's internal address only
        on_node = ssh(classic_lab, node, "docker ps --filter name=^/jupyter-student1$ --format '{{.Names}} {{.Ports}}'")
        print(f"$ docker ps on {node}: {on_node.stdout.strip()}")
        assert on_node.stdout.startswith("jupyter-student1 ")
        assert f"{classic_lab.ip(node)}:" in on_node.stdout and "0.0.0.0" not in on_node.stdout
        # the user reaches their own server through nginx with their browser session
        api = s.get(f"{hub.url}/user/student1/api", timeout=60)
        assert api.status_code == 200 and "version" in api.json(), api.text[:300]
    finally:
        _stop(s, hub, "student1")


def test_a_second_students_server_is_spread_to_the_other_node(classic_lab, hub):
    token = _token(classic_lab)
    users = ("student1", "student2")
    sessions = {}
    try:
        for user in users:
            sessions[user] = _start(hub, user)
            _wait_ready(hub, token, user)
        ps = _manager_ps(classic_lab)
        print(f"\n$ docker -H :4000 ps -a\n{ps}")
        placed = {user: _listed_node(ps, f"jupyter-{user}") for user in users}
        assert set(placed.values()) == {"node1", "node2"}, placed
    finally:
        for user, s in sessions.items():
            _stop(s, hub, user)
    for _ in range(40):  # DockerSpawner's remove = True: the containers go with the servers
        ps = _manager_ps(classic_lab)
        if not any(_listed_node(ps, f"jupyter-{u}") for u in users):
            break
        time.sleep(3)
    else:
        raise AssertionError(f"stopped servers are still listed:\n{ps}")


def test_verify_runs_the_e2e_check_and_says_what_ran_on_stand_ins(classic_lab):
    from hubwizard.session import open_site

    session_ = open_site(classic_lab.site_path, prompt=None)
    engine = session_.engine(lambda e: None)
    try:
        summary = engine.run("verify", steps=[s for s in session_.steps
                                              if s.id in ("classic-hub", "classic-oauth", "classic-culler",
                                                          "classic-e2e", "classic-verify")])
    finally:
        engine.conns.close()
    by_name = {(c.step, c.name): c for c in summary.checks}
    for check in summary.checks:
        state = "skipped" if check.skipped else "ok" if check.ok else "FAILED"
        print(f"\n{check.step}: {check.name}: {state} {check.detail[:400]}")
    failed = [(r.step, r.status, r.message, r.output_tail[-500:]) for r in summary.results if r.status != "ok"]
    assert summary.exit_code == 0, failed
    e2e = next(c for (step, _), c in by_name.items() if step == "classic-e2e")
    assert "lists node" in e2e.detail and "/jupyter-hubwizardcheck" in e2e.detail
    assert "ON LAB STAND-INS" in e2e.detail
    report = next(c for (step, name), c in by_name.items() if step == "classic-verify" and "stand-ins" in name)
    assert report.skipped and "ran on LAB STAND-INS" in report.detail.splitlines()[-1]
    summary_line = report.detail.splitlines()[-1]
    for step in ("classic-consul", "classic-manager", "classic-hub", "classic-e2e", "classic-join"):
        assert step in summary_line, summary_line
    assert not any(c.skipped for (step, _), c in by_name.items() if step in ("classic-oauth", "classic-culler"))
