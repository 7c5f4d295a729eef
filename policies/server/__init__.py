"""The policy server: live recommendations, predicted impact and risk forecasts over HTTP.

A FastAPI app (:func:`create_app`) served by uvicorn (``synctwin serve``). It runs
on onnxruntime alone: it imports neither torch nor ray (Ray Serve lives in
:mod:`policies.ray_serve`).

=======================  =====  ===========================================================
route                    auth   what
=======================  =====  ===========================================================
POST /v1/recommend       key    snapshot -> per sector: action, message, confidence,
                                drivers, predicted impact (twin rollouts with and without)
POST /v1/forecast        key    snapshot -> per sector: risk of SLA misses and overtime
                                over the next hours, under the policy and under no action
POST /v1/feedback        key    was a recommendation accepted? (stored in the decision log)
POST /v1/sites/S/events  key    a live site's floor events: stored, then applied to its twin
GET  /v1/sites/S/state   key    the site's live snapshot (:mod:`~policies.server.sites`)
POST /v1/sites/S/...     key    ``recommend`` and ``forecast`` on the site's live state
GET  /v1/policy          key    the served bundle's manifest
POST /v1/policy/reload   admin  load, verify and swap in another bundle
GET  /healthz                   the process is up
GET  /readyz                    a policy is loaded and the server is not shutting down
GET  /metrics                   Prometheus metrics
GET  /docs, /openapi.json       the API, with a real example snapshot
=======================  =====  ===========================================================

Every response carries the ``X-Policy-Version`` header; recommendations and
forecasts also name the version in their body. A request is answered entirely by
the policy that was current when it started: a reload swaps one reference, under a
lock, after the new bundle has been loaded, verified and tried on example states.

Configuration is one :class:`Settings` object (environment variables prefixed
``SYNCTWIN_``, or ``synctwin serve`` options), validated at start.

The package, by concern: :mod:`~policies.server.config` (``Settings``),
:mod:`~policies.server.state` (the served policy, reloads), :mod:`~policies.server.deps`
(dependencies), :mod:`~policies.server.checks` (request limits),
:mod:`~policies.server.errors`, :mod:`~policies.server.middleware`,
:mod:`~policies.server.metrics`, :mod:`~policies.server.routes` (one router per
resource) and :mod:`~policies.server.app` (``create_app``, ``run_server``).
"""

from policies.questions import recommendation
from policies.server.app import app_from_env, create_app, run_server
from policies.server.checks import check_snapshot, forecast_options, request_options
from policies.server.config import Settings, advice_defaults
from policies.server.deps import (
    API_KEY_HEADER,
    AdminKey,
    ApiKey,
    PolicyDep,
    StateDep,
    current_policy,
    get_state,
    require_admin_key,
    require_api_key,
)
from policies.server.errors import ClientError
from policies.server.metrics import Metrics
from policies.server.middleware import ServingMiddleware
from policies.server.openapi import reference_examples
from policies.server.responses import VERSION_HEADER
from policies.server.routes.forecast import forecast_out
from policies.server.state import (
    PolicyHolder,
    ReloadWatcher,
    ScenarioConflict,
    Served,
    ServerState,
    load_served,
    reload_policy,
)

__all__ = [
    "API_KEY_HEADER",
    "VERSION_HEADER",
    "AdminKey",
    "ApiKey",
    "ClientError",
    "Metrics",
    "PolicyDep",
    "PolicyHolder",
    "ReloadWatcher",
    "ScenarioConflict",
    "Served",
    "ServerState",
    "ServingMiddleware",
    "Settings",
    "StateDep",
    "advice_defaults",
    "app_from_env",
    "check_snapshot",
    "create_app",
    "current_policy",
    "forecast_options",
    "forecast_out",
    "get_state",
    "load_served",
    "recommendation",
    "reference_examples",
    "reload_policy",
    "request_options",
    "require_admin_key",
    "require_api_key",
    "run_server",
]
