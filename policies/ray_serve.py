"""The policy server as a Ray Serve deployment: the same FastAPI app, in replicas.

This is the only module that imports ``ray.serve`` (``pip install "synctwin[scale]"``).
Each replica builds the app itself (:func:`policies.server.create_app`, with the
bundle verified in the replica), so nothing unpicklable crosses process borders;
Ray Serve's proxy routes HTTP requests to the replicas::

    synctwin serve --ray --policy BUNDLE_DIR --replicas 2 --port 8000

or from Python::

    from policies.ray_serve import run
    run(Settings(policy="policies/default"), replicas=2, blocking=False)

Ray Serve costs seconds to start and about a gigabyte across its processes, and adds
milliseconds per request (see the setup notes): use it to spread rollouts over a
cluster, not for one machine, where ``synctwin serve --workers N`` is the lighter
way to use more cores. Reloads reach every replica through the same shared state
file as uvicorn workers (replicas on one node; across nodes, reload each replica
or redeploy).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

from ray import serve
from ray.serve import Deployment

from policies.server import Settings, create_app

APP_NAME = "synctwin"


@serve.deployment(name="SyncTwinPolicyServer", max_ongoing_requests=64)
@serve.ingress()
class PolicyServer:
    """A Ray Serve replica serving :func:`policies.server.create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __serve_build_asgi_app__(self):
        return create_app(self.settings)


def build(settings: Settings, replicas: int = 1, num_cpus: float = 1.0):
    """The bound deployment (an application ``serve.run`` accepts)."""
    if replicas > 1 and settings.reload_state_file is None:
        state = Path(tempfile.mkdtemp(prefix="synctwin-ray-")) / "reload.json"
        settings = settings.model_copy(update={"reload_state_file": state})
    # Serve's decorators are typed as returning a bare Callable, not the Deployment they make
    deployment = cast(Deployment, PolicyServer).options(
        num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus}
    )
    return deployment.bind(settings)


def run(settings: Settings, replicas: int = 1, blocking: bool = True) -> None:
    """Start Ray (locally, unless already connected), Serve's HTTP proxy and the deployment.

    Blocks until interrupted when ``blocking``.
    """
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build(settings, replicas), name=APP_NAME, route_prefix="/", blocking=blocking)
