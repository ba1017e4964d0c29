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

from hubwizard.core.errors import ConfigError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}(@sha256:[0-9a-f]{64})?$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?$")


def _check(pattern: re.Pattern[str], what: str):
    """Build a validator that accepts only values matching ``pattern``."""

    def validate(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"not a valid {what}")
        return value

    return AfterValidator(validate)


def _host_or_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise ValueError("not a valid host name or IP address (letters, digits, '-' and '.')")
    return value


def _path(value: str) -> str:
    if not _PATH.match(value):
        raise ValueError("must be an absolute path of letters, digits, '.', '_', '-' and '/'")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return value


HostName = Annotated[str, AfterValidator(_host_or_ip)]
Name = Annotated[str, _check(_NAME, "name (lowercase letters, digits and '-', starting with a letter)")]
UserName = Annotated[str, _check(_USER, "user name (lowercase letters, digits, '_' and '-')")]
Image = Annotated[str, _check(_IMAGE, "image reference (e.g. registry:5000/jupyterhub:5)")]
Size = Annotated[str, _check(_SIZE, "size (a number with K, M, G or T, e.g. 10G)")]
Email = Annotated[str, _check(_EMAIL, "e-mail address")]
AbsPath = Annotated[str, AfterValidator(_path)]
Url = Annotated[str, _check(_URL, "http(s) URL")]

Role = Literal["hub", "node", "nfs"]
Track = Literal["swarm-mode", "classic"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSection(_Strict):
    """The [site] table: what this cluster is called and which tutorial it follows."""

    name: Name
    track: Track = "swarm-mode"
    domain: HostName
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
        return str(net)


class Host(_Strict):
    """One machine of the site, as SSH reaches it."""

    name: Name
    address: HostName
    role: Role
    user: UserName = "root"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None  # identity file; ssh-agent and ~/.ssh/config are used too
    jump: Name | None = None  # name of another host to reach this one through
    sudo: Literal["nopasswd", "password"] = "nopasswd"
    internal_address: HostName | None = None  # the IP other hosts use; probed if absent
    spare: bool = False  # up but not part of the cluster yet (for add-node rehearsals)
    transport: Literal["ssh", "local"] = "ssh"  # "local": the machine hubwizard runs on


class SshSection(_Strict):
    known_hosts: str | None = None  # default: ~/.ssh/known_hosts
    config: str | None = None  # default: ~/.ssh/config
    connect_timeout: float = Field(10.0, gt=0, le=300)
    command_timeout: float = Field(1800.0, gt=0)


class DockerSection(_Strict):
    min_version: str = "20.10"
    install: bool = True  # install from the distribution if missing
    insecure_registries: list[Annotated[str, AfterValidator(_host_or_ip)] | str] = []

    @field_validator("insecure_registries")
    @classmethod
    def _registries(cls, values: list[str]) -> list[str]:
        for value in values:
            host, _, port = value.partition(":")
            _host_or_ip(host)
            if port and not port.isdigit():
                raise ValueError(f"{value!r}: port must be a number")
        return values


class StorageSection(_Strict):
    kind: Literal["nfs", "autofs", "none"] = "nfs"
    server: Name | None = None  # host name serving NFS; default: the hub
    path: AbsPath = "/var/nfs"
    implementation: Literal["auto", "kernel", "ganesha"] = "auto"


class QuotaSection(_Strict):
    enabled: bool = False
    default: Size = "10G"
    device: AbsPath | None = None  # the XFS filesystem holding storage.path


class RegistrySection(_Strict):
    url: str = "docker.io"
    username: UserName | None = None
    self_hosted: bool = False
    insecure: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        host, _, port = value.partition(":")
        _host_or_ip(host)
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("port must be a number from 1 to 65535")
        return value


class ImagesSection(_Strict):
    hub_base: Image = "jupyterhub/jupyterhub:5"
    hub: Image = "jupyterhub-hub:latest"  # what we build and push
    singleuser: Image = "jupyter/base-notebook:latest"


class HubSection(_Strict):
    network: Name = "jupyterhub"
    cpu_limit: float = Field(1.0, gt=0, le=256)
    mem_limit: Size = "2G"
    idle_timeout: int = Field(3600, ge=60)
    admin_users: list[UserName] = []
    allowed_users: list[UserName] = []
    spawner: Literal["swarm", "docker"] = "swarm"


class HttpsSection(_Strict):
    enabled: bool = True
    acme_server: Url = "https://acme-v02.api.letsencrypt.org/directory"
    acme_ca_bundle: str | None = None  # local file trusted for the ACME server (lab, private CA)


class OAuthSection(_Strict):
    provider: Literal["github", "google", "cilogon", "globus", "generic", "dummy"] = "dummy"
    client_id: Annotated[str, _check(re.compile(r"^[A-Za-z0-9._@-]{1,200}$"), "client id")] | None = None
    authorize_url: Url | None = None  # generic OIDC only
    token_url: Url | None = None
    userdata_url: Url | None = None

    @model_validator(mode="after")
    def _needs_client(self) -> OAuthSection:
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
    oauth: OAuthSection = OAuthSection()
    classic: ClassicSection = ClassicSection()

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
        return self

    # -- views the recipes use -------------------------------------------------
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
        return {"hub": [self.hub_host], "nodes": self.nodes, "nfs": [self.nfs_host], "all": self.active_hosts}.get(
            kind, []
        )

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def _format_errors(path: Path, exc: ValidationError) -> str:
    """Turn pydantic's errors into lines naming the field, the value and the fix."""
    lines = [f"{path}: the site file is not valid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        loc = re.sub(r"hosts\.(\d+)", lambda m: f"hosts[{m.group(1)}]", loc)
        value = err.get("input")
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key (a typo?); remove it or check the spelling against examples/site.toml"
        elif kind == "missing":
            msg = "is required"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        shown = "" if kind == "missing" or isinstance(value, dict) else f" = {value!r}"
        lines.append(f"  {loc or '(top level)'}{shown}: {msg}")
    return "\n".join(lines)


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


def load_site(path: str | Path) -> Site:
    """Read the site file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such site file; create one with `hubwizard init -c {p}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the site file: {exc}") from None
    return parse_site(text, p)
