"""``GET /v1/policy`` (the served bundle) and ``POST /v1/policy/reload`` (admin: swap it).

The two routes need different keys, so each declares its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response

from policies.bundle import BundleError
from policies.schemas import ErrorOut, PolicyInfo, ReloadOut, ReloadRequest
from policies.server.deps import AdminKey, ApiKey, PolicyDep, StateDep
from policies.server.errors import ClientError
from policies.server.responses import ERRORS, json_response
from policies.server.state import ScenarioConflict, reload_policy

log = logging.getLogger("synctwin.server")

router = APIRouter(tags=["policy"])


@router.get("/v1/policy", response_model=PolicyInfo, responses=ERRORS)
async def policy_info(served: PolicyDep, _: ApiKey) -> Response:
    """The served bundle: name, version, scenario and its full manifest.

    ``version`` is the served version, ``"<manifest version>+<content digest>"``; the
    manifest's own ``version`` is in ``manifest``.
    """
    m = served.policy.manifest
    info = PolicyInfo(
        name=m.name,
        version=served.version,
        scenario=m.scenario.name,
        scenario_digest=m.scenario.digest,
        sectors=list(m.sectors),
        policy_mode=m.policy_mode,
        path=str(served.policy.path),
        loaded_at=served.loaded_at,
        manifest=m.model_dump(mode="json"),
    )
    return json_response(info, served.version)


@router.post(
    "/v1/policy/reload",
    response_model=ReloadOut,
    responses={
        **ERRORS,
        403: {"model": ErrorOut, "description": "needs the admin key"},
        409: {"model": ErrorOut, "description": "a bundle for another scenario"},
        422: {"description": "a missing, corrupt or incompatible bundle"},
    },
)
def reload(body: ReloadRequest, state: StateDep, _: AdminKey) -> Response:
    """Load another bundle, verify it fully, then swap it in atomically.

    The old policy keeps answering until the swap; a bundle that fails to load,
    fails its checksums or is incompatible is refused and nothing changes.
    """
    try:
        # relative to the server's working directory, like --policy; ~ expanded
        old, new = reload_policy(state, Path(body.path).expanduser().resolve())
    except BundleError as err:
        raise ClientError(["body", "path"], str(err), "bundle_error") from None
    except ScenarioConflict as err:
        raise HTTPException(409, str(err)) from None
    log.info("reloaded policy %s -> %s from %s", old.version, new.version, body.path)
    out = ReloadOut(
        policy_version=new.version,
        previous_version=old.version,
        name=new.policy.manifest.name,
        path=str(new.policy.path),
        loaded_at=new.loaded_at,
        load_seconds=round(new.load_seconds, 4),
    )
    return json_response(out, new.version)
