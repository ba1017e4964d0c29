"""plan --diff of the hub's Swarm service: its spec as it runs now and as apply would create it,
one setting per line (``image: ...``, ``mount: ...``, ``secret: ...``), so a changed image
digest, mount or secret shows as a line that changes.

Why read back from ``docker service inspect``: the service only carries a digest of what it was
created from (hub_service.SPEC_LABEL), which says *that* it changed, not *what*. Secrets show by
their Docker secret names (a digest of the value, never the value).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from hubwizard.actions import hub_service
from hubwizard.engine.calls import StepContext
from hubwizard.engine.diff import SpecView, spec_view

_SKIP = {"--detach", "--with-registry-auth"}  # how the service is created, not what it is


def lines_from_args(args: list[str]) -> list[str]:
    """`docker service create` arguments (flags with values, then the image) as sorted lines."""
    out, i = [f"image: {args[-1]}"], 0
    while i < len(args) - 1:
        flag = args[i]
        if flag in _SKIP:
            i += 1
            continue
        out.append(f"{flag.lstrip('-')}: {args[i + 1]}")
        i += 2
    return sorted(out)


def lines_from_spec(spec: dict[str, Any], network_names: dict[str, str]) -> list[str]:
    """A service's Spec (``docker service inspect``) as the same lines as lines_from_args."""
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    endpoint = spec.get("EndpointSpec") or {}
    out = [f"name: {spec.get('Name', '')}", f"image: {container.get('Image', '')}"]
    out += [f"constraint: {c}" for c in (task.get("Placement") or {}).get("Constraints") or []]
    if endpoint.get("Mode"):
        out.append(f"endpoint-mode: {endpoint['Mode']}")
    for net in task.get("Networks") or spec.get("Networks") or []:
        out.append(f"network: {network_names.get(net.get('Target', ''), net.get('Target', ''))}")
    for port in endpoint.get("Ports") or []:
        out.append(f"publish: mode={port.get('PublishMode', 'ingress')},target={port.get('TargetPort')},"
                   f"published={port.get('PublishedPort')}")
    for m in container.get("Mounts") or []:
        out.append(f"mount: type={m.get('Type')},source={m.get('Source')},target={m.get('Target')}")
    out += [f"env: {e}" for e in container.get("Env") or []]
    for sec in container.get("Secrets") or []:
        file = sec.get("File") or {}
        out.append(f"secret: source={sec.get('SecretName')},target={file.get('Name')},mode={file.get('Mode', 0):04o}")
    return sorted(out)


def _current(ctx: StepContext) -> str:
    """The running service's lines ("" when there is no service yet)."""
    from hubwizard.core.render import HUB_SERVICE

    res = ctx.run(f"docker service inspect --format {shlex.quote('{{json .Spec}}')} {HUB_SERVICE}", sudo=True)
    if not res.ok:
        return ""
    spec = json.loads(res.stdout)
    names = {}
    for net in (spec.get("TaskTemplate") or {}).get("Networks") or []:
        target = net.get("Target", "")
        got = ctx.run(f"docker network inspect --format '{{{{.Name}}}}' {shlex.quote(target)}", sudo=True)
        if got.ok:
            names[target] = got.stdout.strip()
    return "".join(f"{line}\n" for line in lines_from_spec(spec, names))


@spec_view("hub_service", "Swarm service jupyterhub (spec)")
def hub_service_spec(ctx: StepContext) -> SpecView:
    """The hub service now and as apply would create it."""
    wanted = hub_service._wanted(ctx, create=False, mode=hub_service.endpoint(ctx).mode)
    if wanted is None:
        return SpecView(note=f"(not shown: {ctx.site.images.hub} is not on the hub yet; the hub-image step builds it)")
    return SpecView(_current(ctx), "".join(f"{line}\n" for line in lines_from_args(wanted[0])))
