"""The Python calls that recipes name (``call: name``): preflight probes, Swarm and storage,
quotas, the hub image/service/web/end-to-end checks, the classic track and its TLS material.

Importing this package registers every call with hubwizard.engine.calls: whoever builds an
Engine for real recipes (the session, the doctor) imports it, so the engine itself never
loads modules by name.
"""

from hubwizard.actions import (  # noqa: F401
    backup,
    classic,
    classic_guard,
    classic_ha,
    classic_hub,
    hub_e2e,
    hub_image,
    hub_service,
    hub_users,
    hub_web,
    nfs_guard,
    probes,
    registry,
    storage_host,
    swarm,
)
