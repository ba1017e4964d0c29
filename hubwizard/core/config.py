"""The site file: one TOML document describing a cluster, validated strictly.

Why strict: an admin's typo (``adress``) must fail loudly before any host is touched,
and every value that later reaches a shell or a generated file is checked here first,
so injection is refused at the door as well as quoted at the template.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hubwizard.core.endpoint import MODES
from hubwizard.core.errors import ConfigError

# Every pattern is applied with ``fullmatch`` and ends in ``\Z``: ``$`` also matches before a
# trailing newline, and ``"/var/nfs\n"`` would then write one more line into every export file.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?\Z")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}(@sha256:[0-9a-f]{64})?\Z")
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?[KMGT]?\Z")
_EMAIL = re.compile(r"(?=.{3,254}\Z)[A-Za-z0-9_][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}\Z")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*\Z")
_URL = re.compile(r"(?=.{1,2048}\Z)https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?\Z")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,199}\Z")  # no leading "-": never an option
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,3}\Z")
# a local file path (key, known_hosts, ssh config, CA bundle): printable, no control characters
# (C0, DEL, C1 with U+0085, and the Unicode line and paragraph separators U+2028/U+2029)
_LOCAL_PATH = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,4096}\Z")


def _check(pattern: re.Pattern[str], what: str):
    """Build a validator that accepts only values matching ``pattern``."""

    def validate(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(validate)


def _host_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if "%" in value:  # an IPv6 scope id is free text ("fe80::1%$(id)" parses): refused
            raise ValueError("an IPv6 address with a %scope id is not supported; give the address alone")
        return value
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("not a valid host name or IP address (letters, digits, '-' and '.')")
    if value.rstrip(".").rpartition(".")[2].isdigit():  # "999.1.1.1", "10.0.0": meant as an IPv4 address
        raise ValueError("not an IPv4 address (four numbers from 0 to 255, e.g. 10.0.0.11) and not a host name "
                         "(a host name does not end in a number)")
    return value


def _dns_name(value: str) -> str:
    """The certificate's name: a full DNS name (a host name with a dot), never an IP or a bare alias."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise ValueError("is an IP address; the certificate is issued for a DNS name, e.g. hub.example.org")
    _host_or_ip(value)
    if "." not in value.rstrip("."):
        raise ValueError("needs a dot, e.g. hub.example.org (a full DNS name that points at the hub)")
    if value.endswith("."):
        raise ValueError("remove the trailing dot, e.g. hub.example.org")
    return value


def _path(value: str) -> str:
    if len(value) > 4096:
        raise ValueError(f"is {len(value)} characters long; a path has at most 4096")
    if not _PATH.fullmatch(value):
        raise ValueError("must be an absolute path of letters, digits, '.', '_', '-' and '/'")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return value


def _local_path(value: str) -> str:
    if len(value) > 4096:
        raise ValueError(f"is {len(value)} characters long; a file path has at most 4096")
    if not _LOCAL_PATH.fullmatch(value):
        raise ValueError("must be a file path without newlines or control characters")
    return value


def _port(value: str) -> str:
    if not re.fullmatch(r"[0-9]{1,5}", value) or not 0 < int(value) < 65536:
        raise ValueError("port must be a number from 1 to 65535")
    return value


def _subnet_scope(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why an export to ``net`` could reach machines that are not the cluster's; None if it cannot."""
    if net.is_loopback:
        return None  # reaches this machine only, whatever its size
    shortest, public_shortest = (16, 24) if net.version == 4 else (48, 64)
    if net.prefixlen < shortest:
        return (f"/{net.prefixlen} is wider than /{shortest}: NFS exports and Docker ports would be open to "
                f"{net.num_addresses:,} addresses; name the cluster's own network (e.g. 10.0.0.0/24)")
    if not net.is_private and net.prefixlen < public_shortest:
        return (f"a public range wider than /{public_shortest} holds other people's machines; name the hosts' "
                f"private network, or a /{public_shortest} or narrower, or leave subnet out (the hosts' own addresses are used)")
    return None


HostName = Annotated[str, AfterValidator(_host_or_ip)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
LocalPath = Annotated[str, AfterValidator(_local_path)]
Name = Annotated[str, _check(_NAME, "name (lowercase letters, digits and '-', starting with a letter)")]
UserName = Annotated[str, _check(_USER, "user name (lowercase letters, digits, '_' and '-')")]
Image = Annotated[str, _check(_IMAGE, "image reference (e.g. registry:5000/jupyterhub:5)")]
Size = Annotated[str, _check(_SIZE, "size (a number with K, M, G or T, e.g. 10G)")]
Email = Annotated[str, _check(_EMAIL, "e-mail address")]
AbsPath = Annotated[str, AfterValidator(_path)]
Url = Annotated[str, _check(_URL, "http(s) URL")]
# shown in the spawn form as is (dockerspawner does not escape it): no <, >, & or quotes
ProfileName = Annotated[str, _check(re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()+-]{0,59}\Z"),
                                    "profile name (letters, digits, spaces and ._()+-, up to 60)")]


def _bytes(size: str) -> float:
    """A Size in bytes (binary units, as JupyterHub reads mem_limit)."""
    return float(size.rstrip("KMGT")) * 1024 ** ("_KMGT".find(size[-1]) if size[-1] in "KMGT" else 0)

Role = Literal["hub", "node", "nfs"]
Track = Literal["swarm-mode", "classic"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSection(_Strict):
    """The [site] table: what this cluster is called and which tutorial it follows."""

    name: Name
    track: Track = "swarm-mode"
    domain: DnsName
    email: Email
    subnet: str | None = None  # the cluster's internal network; derived from hosts if absent

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError("not a CIDR network such as 10.0.0.0/24") from exc
        if net.prefixlen == 0:
            raise ValueError("0.0.0.0/0 would open exports to everyone; name the cluster subnet")
        why = _subnet_scope(net)
        if why:
            raise ValueError(why)
        return str(net)


class Host(_Strict):
    """One machine of the site, as SSH reaches it."""

    name: Name
    address: HostName
    role: Role
    user: UserName = "root"
    port: int = Field(default=22, ge=1, le=65535)
    key: LocalPath | None = None  # identity file; ssh-agent and ~/.ssh/config are used too
    jump: Name | None = None  # name of another host to reach this one through
    sudo: Literal["nopasswd", "password"] = "nopasswd"
    internal_address: HostName | None = None  # the IP other hosts use; probed if absent
    spare: bool = False  # up but not part of the cluster yet (for add-node rehearsals)
    transport: Literal["ssh", "local"] = "ssh"  # "local": the machine hubwizard runs on


class SshSection(_Strict):
    known_hosts: LocalPath | None = None  # default: ~/.ssh/known_hosts
    config: LocalPath | None = None  # default: ~/.ssh/config
    connect_timeout: float = Field(default=10.0, gt=0, le=300)
    command_timeout: float = Field(default=1800.0, gt=0)


class DockerSection(_Strict):
    min_version: Annotated[str, _check(_VERSION, "version such as 20.10")] = "20.10"
    install: bool = True  # install from the distribution if missing
    # the SSH login user in the docker group: root without sudo, so off unless the admin wants
    # `docker` without sudo on the hosts (hubwizard itself always goes through sudo)
    admin_in_docker_group: bool = False
    insecure_registries: list[Annotated[str, AfterValidator(_host_or_ip)] | str] = []

    @field_validator("insecure_registries")
    @classmethod
    def _registries(cls, values: list[str]) -> list[str]:
        for value in values:
            host, sep, port = value.partition(":")
            _host_or_ip(host)
            if sep:
                _port(port)
        return values


class StorageSection(_Strict):
    kind: Literal["nfs", "autofs", "none"] = "nfs"
    server: Name | None = None  # host name serving NFS; default: the hub
    path: AbsPath = "/var/nfs"
    implementation: Literal["auto", "kernel", "ganesha"] = "auto"
    # nfs-ganesha's grace period (s) after each (re)start, while clients reclaim their locks and
    # new writes are told "try later". 90 is ganesha's default; a fresh install has no client to
    # reclaim anything (the lab sets 10: ~80 s off every first apply).
    grace_period: int = Field(default=90, ge=5, le=180)
    # lab only (the container lab's kernel has no NFS client): users' servers get no NFS volume,
    # their files stay in their containers. Anywhere else a node that cannot mount NFS fails
    # step storage-clients (install nfs-common), never a silent fallback.
    lab_without_nfs_client: bool = False


class QuotaSection(_Strict):
    enabled: bool = False
    default: Size = "10G"
    device: AbsPath | None = None  # the XFS filesystem holding storage.path


class RegistrySection(_Strict):
    url: str = "docker.io"
    username: UserName | None = None
    self_hosted: bool = False
    insecure: bool = False
    pull_username: UserName = "hubwizard-pull"  # self-hosted: the nodes' read-only account

    @model_validator(mode="after")
    def _self_hosted(self) -> RegistrySection:
        if self.self_hosted and self.insecure:
            raise ValueError("[registry] self_hosted speaks TLS with the site CA (every host trusts it for this "
                             "registry alone): remove insecure = true")
        if self.self_hosted and self.pull_username == self.username:
            raise ValueError("[registry] pull_username must differ from username: the nodes' account may only pull")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        host, sep, port = value.partition(":")
        _host_or_ip(host)
        if sep:
            _port(port)
        return value


class ImagesSection(_Strict):
    hub_base: Image = "jupyterhub/jupyterhub:5"
    hub: Image = "jupyterhub-hub:latest"  # what we build and push
    singleuser: Image = "jupyter/base-notebook:latest"
    # more images users choose from in the spawn form (name shown -> image), each pre-pulled;
    # singleuser stays the default (first in the form, and what API spawns get)
    profiles: dict[ProfileName, Image] = {}

    @property
    def user_images(self) -> list[str]:
        """Every image a user's server may run, the default first, each once."""
        return list(dict.fromkeys([self.singleuser, *self.profiles.values()]))

    @property
    def spawn_choices(self) -> dict[str, str]:
        """The spawn form's images (name shown -> image), the default first."""
        return {"Default": self.singleuser, **self.profiles}


class HubSection(_Strict):
    network: Name = "jupyterhub"
    cpu_limit: float = Field(default=1.0, gt=0, le=256)
    mem_limit: Size = "2G"
    idle_timeout: int = Field(default=3600, ge=60)
    # Swarm reservations: a node takes a user's server only while it has this much free
    cpu_guarantee: float | None = Field(default=None, gt=0, le=256)
    mem_guarantee: Size | None = None
    admin_users: list[UserName] = []
    allowed_users: list[UserName] = []
    spawner: Literal["swarm", "docker"] = "swarm"

    @model_validator(mode="after")
    def _guarantee_within_limit(self) -> HubSection:
        if self.cpu_guarantee is not None and self.cpu_guarantee > self.cpu_limit:
            raise ValueError(f"cpu_guarantee = {self.cpu_guarantee:g} is above cpu_limit = {self.cpu_limit:g}: "
                             "a server cannot be promised more than it may use; lower it or raise cpu_limit")
        if self.mem_guarantee is not None and _bytes(self.mem_guarantee) > _bytes(self.mem_limit):
            raise ValueError(f"mem_guarantee = {self.mem_guarantee!r} is above mem_limit = {self.mem_limit!r}: "
                             "lower it or raise mem_limit")
        return self


class HttpsSection(_Strict):
    enabled: bool = True
    acme_server: Url = "https://acme-v02.api.letsencrypt.org/directory"
    acme_ca_bundle: LocalPath | None = None  # local file trusted for the ACME server (lab, private CA)


DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
HUB_IMAGE_HELP = ("Docker Hub needs USER/NAME where USER is an account you can push to, e.g. "
                  "alice/workshop-hub:latest (another registry: REGISTRY/NAME:TAG)")


def docker_hub_library(image: str) -> bool:
    """Whether ``image`` is in Docker Hub's official library (``name:tag``, ``library/name``), where
    only Docker pushes: the first part of a reference is a registry when it has '.' or ':' or is localhost."""
    first, sep, rest = image.split("@", 1)[0].partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first in DOCKER_HUB and ("/" not in rest or rest.startswith("library/"))
    return not sep or first == "library"


DUMMY_FLAG = "i_understand_anyone_can_log_in"
OAUTH_PROVIDERS = ("github", "google", "cilogon", "globus", "generic")
_WHO_LOGS_IN = ('who may log in: set [oauth] provider = "github" (or google, cilogon, globus, generic) with '
                'its client_id, and [hub] admin_users; provider = "dummy" lets anyone log in as anyone '
                f'(a lab only) and needs {DUMMY_FLAG} = true')


class OAuthSection(_Strict):
    """Who may log in. No default: a hub on a public address must not come up open to anyone."""

    provider: Literal["github", "google", "cilogon", "globus", "generic", "dummy"]
    i_understand_anyone_can_log_in: bool = False  # required with provider "dummy" (labs, rehearsals)
    client_id: Annotated[str, _check(_CLIENT_ID, "client id (letters, digits and ._@-)")] | None = None
    authorize_url: Url | None = None  # generic OIDC only
    token_url: Url | None = None
    userdata_url: Url | None = None

    @model_validator(mode="after")
    def _needs_client(self) -> OAuthSection:
        if self.provider == "dummy" and not self.i_understand_anyone_can_log_in:
            raise ValueError(f'provider "dummy" lets anyone log in as any user, admins included; for a lab add '
                             f'{DUMMY_FLAG} = true, else use a real provider (github, google, cilogon, globus, generic)')
        if self.provider != "dummy" and self.i_understand_anyone_can_log_in:
            raise ValueError(f"{DUMMY_FLAG} applies to provider \"dummy\" only; remove it")
        if self.provider != "dummy" and not self.client_id:
            raise ValueError(f"provider {self.provider!r} needs client_id")
        if self.provider == "generic" and not (self.authorize_url and self.token_url and self.userdata_url):
            raise ValueError("provider 'generic' needs authorize_url, token_url and userdata_url")
        return self


class ClassicSection(_Strict):
    consul_image: Image = "progrium/consul"
    swarm_image: Image = "swarm:1.2.9"
    docker_tls: bool = True
    allow_plain_tcp: bool = False  # plain 2375, loudly warned, bound to the internal IP
    # lab only: where the consul/swarm images cannot be pulled (no Docker Hub), run stand-ins:
    # a Consul status endpoint on :8500, and :4000 relayed to the hub's own dockerd TLS port
    lab_stand_ins: bool = False
    # high availability (seed 000): Consul servers (the hub, then the replica's node, then the
    # other nodes in order) and a second `swarm manage --replication` on that node
    consul_servers: int = 1
    replica_manager: Name | None = None

    @field_validator("consul_servers")
    @classmethod
    def _consul_servers(cls, value: int) -> int:
        if value not in (1, 2, 3):
            raise ValueError("must be 1, 2 or 3 Consul servers (the hub, then nodes); 3 survive losing one, "
                             "2 do not (both are needed for a leader)")
        return value


_SFTP_TARGET = re.compile(r"sftp:([a-z_][a-z0-9_-]{0,31})@([A-Za-z0-9.-]{1,253}):(/[A-Za-z0-9._/-]*)\Z")
_S3_TARGET = re.compile(r"s3:(https?://)?[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?/[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9._/-]*)?\Z")
_CALENDAR = re.compile(r"[A-Za-z0-9*][A-Za-z0-9*:,./~ -]{0,99}\Z")  # a systemd OnCalendar expression


class SwarmSection(_Strict):
    """[swarm] (swarm-mode track): how many managers hold the swarm's state (Raft), and the
    services' endpoint mode."""

    # 1: the hub alone. 3: the hub and the first two nodes in the site file's order, so the
    # swarm keeps answering when one manager machine is lost (the hub's database still lives on
    # the hub: README "Three managers: the limits").
    managers: int = 1
    # how the hub and users' servers are reached on the overlay network: "vip" (a virtual IP,
    # needs the kernel's IPVS on every swarm host), "dnsrr" (DNS round robin), or "auto": vip
    # when every swarm host has IPVS, else dnsrr (hubwizard/core/endpoint.py)
    endpoint_mode: str = "auto"

    @field_validator("endpoint_mode")
    @classmethod
    def _endpoint_mode(cls, value: str) -> str:
        if value not in MODES:
            raise ValueError('must be "auto" (vip where every swarm host has IPVS, else dnsrr), "vip" (a virtual '
                             'IP per service, needs IPVS in every host\'s kernel) or "dnsrr" (DNS round robin)')
        return value

    @field_validator("managers")
    @classmethod
    def _managers(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("must be 1 (the hub) or 3 (the hub and the first two nodes): Raft needs a majority, "
                             "so 2 managers stop when either is lost and 4 survive no more than 3")
        return value


class BackupsSection(_Strict):
    """[backups]: nightly encrypted, incremental backups (restic) of the users' storage and the hub's
    database to another host over SFTP or an S3 bucket. Off unless the admin names a target."""

    enabled: bool = False
    target: str | None = None  # "sftp:USER@HOST:/path" or "s3:https://HOST/bucket/prefix"
    ssh_port: int = Field(default=22, ge=1, le=65535)  # sftp targets
    s3_access_key_id: Annotated[str, _check(_CLIENT_ID, "access key id")] | None = None  # its secret: backup_s3_secret_key
    schedule: Annotated[str, _check(_CALENDAR, "systemd OnCalendar expression (e.g. *-*-* 02:30:00)")] = "*-*-* 02:30:00"
    keep_daily: int = Field(default=7, ge=1, le=3650)
    keep_weekly: int = Field(default=4, ge=0, le=520)
    keep_monthly: int = Field(default=6, ge=0, le=240)
    max_age_hours: int = Field(default=36, ge=1)  # verify fails when the newest backup is older

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return value
        sftp = _SFTP_TARGET.fullmatch(value)
        if sftp:
            _host_or_ip(sftp.group(2))
            _path(sftp.group(3))
            return value
        if _S3_TARGET.fullmatch(value) and ".." not in value:
            return value
        raise ValueError('not a backup target: "sftp:USER@HOST:/path" (another host over SSH) or '
                         '"s3:https://HOST/bucket/prefix" (an S3-compatible bucket)')

    @model_validator(mode="after")
    def _needs_target(self) -> BackupsSection:
        if self.enabled and not self.target:
            raise ValueError('backups are enabled but no target is named: set target = "sftp:USER@HOST:/path" '
                             'or "s3:https://HOST/bucket/prefix"')
        if self.enabled and self.target and self.target.startswith("s3:") and not self.s3_access_key_id:
            raise ValueError("an s3 target needs s3_access_key_id (its secret: backup_s3_secret_key in the secrets file)")
        return self

    @property
    def sftp(self) -> tuple[str, str, str] | None:
        """(user, host, path) of an sftp target; None for s3 or none."""
        m = _SFTP_TARGET.fullmatch(self.target or "")
        return (m.group(1), m.group(2), m.group(3)) if m else None


class Site(_Strict):
    """The whole site file."""

    site: SiteSection
    hosts: list[Host]
    ssh: SshSection = SshSection()
    docker: DockerSection = DockerSection()
    storage: StorageSection = StorageSection()
    quotas: QuotaSection = QuotaSection()
    registry: RegistrySection = RegistrySection()
    images: ImagesSection = ImagesSection()
    hub: HubSection = HubSection()
    https: HttpsSection = HttpsSection()
    oauth: OAuthSection  # no default: see _WHO_LOGS_IN
    classic: ClassicSection = ClassicSection()
    backups: BackupsSection = BackupsSection()
    swarm: SwarmSection = SwarmSection()

    @model_validator(mode="after")
    def _pushable(self) -> Site:
        """The hub image must be one the admin can push. Its default (Docker Hub's library too) is left
        alone, written or not, so sites that never build it load; init and the wizard offer a pushable one."""
        if self.images.hub != ImagesSection.model_fields["hub"].default and docker_hub_library(self.images.hub):
            raise ValueError(f"images.hub = {self.images.hub!r}: {HUB_IMAGE_HELP}")
        return self

    @model_validator(mode="after")
    def _topology(self) -> Site:
        names = [h.name for h in self.hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"host names must be unique; repeated: {', '.join(dupes)}")
        hubs = [h for h in self.hosts if h.role == "hub" and not h.spare]
        if len(hubs) != 1:
            raise ValueError(f"exactly one host needs role = \"hub\" (found {len(hubs)})")
        for host in self.hosts:
            if host.jump is not None and host.jump not in names:
                raise ValueError(f"host {host.name!r}: jump = {host.jump!r} is not a host of this site")
            if host.jump == host.name:
                raise ValueError(f"host {host.name!r} cannot jump through itself")
        if self.storage.server is not None and self.storage.server not in names:
            raise ValueError(f"storage.server = {self.storage.server!r} is not a host of this site")
        self._classic_ha()
        self._swarm_managers()
        if self.oauth.provider != "dummy" and not self.hub.admin_users:
            raise ValueError(f"hub.admin_users = []: with provider {self.oauth.provider!r} nobody could run the hub; "
                             'name your own login there, e.g. admin_users = ["your-github-login"]')
        return self

    def _classic_ha(self) -> None:
        """[classic] replica_manager names an active node; consul_servers fit on the hub and nodes."""
        replica, nodes = self.classic.replica_manager, [h.name for h in self.nodes]
        if replica is not None and replica not in nodes:
            raise ValueError(f"classic.replica_manager = {replica!r} is not an active node of this site "
                             f"(nodes: {', '.join(nodes) or 'none'}); the second manager runs on a node")
        if self.classic.consul_servers - 1 > len(nodes):
            raise ValueError(f"classic.consul_servers = {self.classic.consul_servers}: the hub and "
                             f"{len(nodes)} node(s) can hold at most {len(nodes) + 1}")

    # -- views the recipes use -------------------------------------------------
    @property
    def consul_hosts(self) -> list[Host]:
        """Where Consul servers run (classic): the hub, the replica manager's node, other nodes."""
        order = sorted(self.nodes, key=lambda h: h.name != self.classic.replica_manager)
        return [self.hub_host, *order][: self.classic.consul_servers]

    @property
    def manager_hosts(self) -> list[Host]:
        """Where `swarm manage` runs (classic): the hub, and the replica's node when there is one."""
        replica = [h for h in self.nodes if h.name == self.classic.replica_manager]
        return [self.hub_host, *replica]

    def _swarm_managers(self) -> None:
        """[swarm] managers = 3 needs two nodes beside the hub (they become its fellow managers)."""
        extra = self.swarm.managers - 1
        if extra and self.site.track == "classic":
            raise ValueError("swarm.managers is for the swarm-mode track; the classic track's second manager is "
                             "[classic] replica_manager")
        if extra > len(self.nodes):
            raise ValueError(f"swarm.managers = {self.swarm.managers} needs the hub and {extra} nodes (the first "
                             f"{extra} in the site file become managers); this site has {len(self.nodes)} node(s)")

    @property
    def swarm_manager_nodes(self) -> list[Host]:
        """The nodes that are Swarm managers beside the hub: the first ``managers - 1`` nodes."""
        return self.nodes[: self.swarm.managers - 1]

    @property
    def hub_host(self) -> Host:
        return next(h for h in self.hosts if h.role == "hub" and not h.spare)

    @property
    def nodes(self) -> list[Host]:
        return [h for h in self.hosts if h.role == "node" and not h.spare]

    @property
    def active_hosts(self) -> list[Host]:
        return [h for h in self.hosts if not h.spare]

    @property
    def nfs_host(self) -> Host:
        name = self.storage.server
        if name is None:
            nfs = [h for h in self.active_hosts if h.role == "nfs"]
            return nfs[0] if nfs else self.hub_host
        return self.host(name)

    def targets(self, kind: str) -> list[Host]:
        """The hosts a step aimed at ``kind`` (hub, nodes, nfs, all) runs on."""
        if kind == "backup":  # where the users' folders are (classic: the hub's /home), then the hub
            first = self.hub_host if self.site.track == "classic" else self.nfs_host
            return [first] if first.name == self.hub_host.name else [first, self.hub_host]
        return {"hub": [self.hub_host], "nodes": self.nodes, "nfs": [self.nfs_host], "all": self.active_hosts}.get(
            kind, []
        )

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def _shown(value: object, limit: int = 120) -> str:
    """A value as the message shows it: repr, cut short (a 70,000-character value is not read)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _format_errors(path: Path, exc: ValidationError) -> str:
    """Turn pydantic's errors into lines naming the field, the value and the fix (one line when
    there is one error: ``site.toml: site.domain = 'hub': needs a dot, e.g. hub.example.org``)."""
    lines = [f"{path}: the site file is not valid:"]
    for err in exc.errors():
        loc = _field(err["loc"])
        value = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = ("unknown key (a typo?); remove it or check the spelling against the example site file "
                   "(`hubwizard init --example -c example.toml` writes it)")
        elif kind == "missing":
            msg = "is required" + (f": {_WHO_LOGS_IN}" if loc in ("oauth", "oauth.provider") else "")
        else:
            msg = err["msg"].removeprefix("Value error, ")
        shown = "" if kind == "missing" or isinstance(value, dict) else f" = {_shown(value)}"
        lines.append(f"  {loc}{shown}: {msg}" if loc else f"  {msg}")
    return f"{path}: {lines[1].strip()}" if len(lines) == 2 else "\n".join(lines)


def parse_site(text: str, path: Path = Path("<site>")) -> Site:
    """Parse and validate TOML text; raise ConfigError with a readable message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}\n  fix the syntax at that line and column") from None
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc)) from None


def load_site(path: str | Path, *, check_files: bool = True) -> Site:
    """Read the site file at ``path``; with ``check_files``, also the local files it names."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such site file; create one with `hubwizard init -c {p}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the site file: {exc}") from None
    site = parse_site(text, p)
    if check_files:
        problems = local_file_problems(site)
        if problems:
            raise ConfigError("\n".join([f"{p}: the site file names local files that cannot be used:", *problems]))
    return site


def _field(loc: tuple[int | str, ...]) -> str:
    """A field as the file names it: ``hosts[0].address``; a key the admin typed (an unknown key,
    a profile name) as its repr, so a newline or a 10,000-character key stays on one short line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", part):
            out += f".{part}" if out else part
        elif not part.startswith("function-") and part != "[key]":
            out += f"[{_shown(part, 60)}]"
    return out


def _file_problem(value: str, *, may_be_missing: bool = False) -> str | None:
    """Why the local file ``value`` cannot be read (a directory, missing, unreadable); None if it can."""
    import os
    import stat

    target = Path(value).expanduser()
    try:
        st = target.stat()
    except FileNotFoundError:
        if may_be_missing and target.parent.is_dir():
            return None
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a file"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        return "is not a regular file"
    if not os.access(target, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def local_file_problems(site: Site) -> list[str]:
    """Every local file the site names (SSH keys, ssh config, known_hosts, the ACME CA bundle)
    checked now, so a wrong path is bad input naming the field, not a crash halfway through a run.
    known_hosts may be missing (accepting a host key creates it) when its folder exists."""
    fields: list[tuple[str, str | None, bool, str]] = [
        (f"hosts[{i}].key", h.key, False, "the SSH private key for this host (or remove key = to use ssh-agent)")
        for i, h in enumerate(site.hosts)
    ]
    fields += [
        ("ssh.config", site.ssh.config, False, "an OpenSSH client config file (or remove the line)"),
        ("ssh.known_hosts", site.ssh.known_hosts, True, "a known_hosts file, or a new file in an existing folder"),
        ("https.acme_ca_bundle", site.https.acme_ca_bundle, False, "a PEM file of the ACME server's CA"),
    ]
    out = []
    for name, value, may_be_missing, want in fields:
        if value is None:
            continue
        why = _file_problem(value, may_be_missing=may_be_missing)
        if why:
            out.append(f"  {name} = {_shown(value)}: {why}; it must name {want}")
    return out


def oauth_callback_url(site: Site) -> str | None:
    """The URL to register with the OAuth provider (None for the dummy login)."""
    if site.oauth.provider == "dummy":
        return None
    scheme, port = ("https", "") if site.https.enabled else ("http", ":8000")
    return f"{scheme}://{site.site.domain}{port}/hub/oauth_callback"


def site_warnings(site: Site) -> list[str]:
    """Loud lines for plan/apply/verify: settings the admin chose that leave the hub open."""
    out = []
    if site.oauth.provider == "dummy":
        admins = ", ".join(site.hub.admin_users) or "none named"
        out.append(f"WARNING: [oauth] provider = \"dummy\" ({DUMMY_FLAG} = true): ANYONE who reaches "
                   f"{site.site.domain} can log in as any user, admins ({admins}) included, and run code on "
                   "the cluster. For a lab only; set a real OAuth provider before real users come.")
    if site.site.track == "classic" and site.classic.allow_plain_tcp:
        out.append("WARNING: [classic] allow_plain_tcp = true: dockerd listens without TLS on the internal "
                   "address; anyone on that network is root on every host.")
    return out
