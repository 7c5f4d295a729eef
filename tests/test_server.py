"""The policy server, run as users run it: ``synctwin serve`` on 127.0.0.1, real snapshots.

One server process (a subprocess on a free port, waited on ``/readyz``) answers most
tests; it serves copies of the session's policy bundle with versions ``srv-1`` and
``srv-2``, so reloads can be told apart. Unit tests of the pieces (intervals,
impact, attribution, messages, the decision log) run in-process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import SHIPPED_BUNDLE, stop_server, wait_ready
from scipy import stats as scipy_stats

from policies.bundle import DIGEST_CHARS, read_manifest
from policies.decision_log import DecisionLog
from policies.explain import decide_and_explain, reference_day
from policies.impact import estimate_impact, forecast, mean_interval, proportion_interval
from policies.messages import kinds, message
from policies.runtime import BundlePolicy
from twin.actions import SectorAction
from twin.features import FEATURE_NAMES, featurizer
from twin.model import OperationModel
from twin.scenario import load_scenario
from twin.snapshot import OperationSnapshot

API_KEY = "test-key"
ADMIN_KEY = "test-admin-key"
MAX_BODY = 200_000
FAST = {"impact": True, "samples": 3, "horizon_minutes": 45}
# what the server reports for the copies: manifest version + the contents' digest, which
# the copies share with the shipped bundle (the manifest's version is not part of it)
DIGEST = read_manifest(SHIPPED_BUNDLE).content_digest[:DIGEST_CHARS]
SRV1, SRV2 = f"srv-1+{DIGEST}", f"srv-2+{DIGEST}"


# --------------------------------------------------------------------------- fixtures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_bundle(source: Path, target: Path, **updates: object) -> Path:
    """Copy a bundle, changing top-level manifest fields (checksums cover only the ONNX files)."""
    shutil.copytree(source, target)
    path = target / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(updates)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return target


@dataclass
class Bundles:
    v1: Path
    v2: Path
    corrupt: Path
    incompatible: Path
    other_scenario: Path


@pytest.fixture(scope="module")
def bundles(policy_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("server-bundles")
    corrupt = copy_bundle(policy_bundle, root / "corrupt", version="corrupt")
    (corrupt / "packing.onnx").write_bytes(b"not an onnx file")
    incompatible = copy_bundle(policy_bundle, root / "incompatible", version="incompatible")
    manifest = json.loads((incompatible / "manifest.json").read_text())
    manifest["feature_names"] = manifest["feature_names"][::-1]
    (incompatible / "manifest.json").write_text(json.dumps(manifest))
    other = copy_bundle(policy_bundle, root / "other", version="other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["scenario"] = {"name": "peak-surge", "digest": "0"}
    (other / "manifest.json").write_text(json.dumps(manifest))
    return Bundles(
        v1=copy_bundle(policy_bundle, root / "v1", version="srv-1"),
        v2=copy_bundle(policy_bundle, root / "v2", version="srv-2"),
        corrupt=corrupt,
        incompatible=incompatible,
        other_scenario=other,
    )


@dataclass
class Server:
    url: str
    log: Path
    proc: subprocess.Popen

    def headers(self, key: str | None = API_KEY) -> dict[str, str]:
        return {"X-API-Key": key} if key else {}


def start_server(bundle: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> Server:
    """``synctwin serve`` in a subprocess, waited on /readyz."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "experiments.cli", "serve", "--policy", str(bundle),
        "--port", str(port), "--api-key", API_KEY, "--admin-key", ADMIN_KEY,
        "--log", str(log), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "SYNCTWIN_MAX_BODY_BYTES": str(MAX_BODY), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, interval=0.05)
    return Server(url, log, proc)


stop = stop_server  # the one way the tests stop a server (conftest)


@pytest.fixture(scope="module")
def server(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "decisions.jsonl"
    srv = start_server(bundles.v1, log)
    yield srv
    stop(srv.proc)


@pytest.fixture(scope="module")
def snapshots() -> list[OperationSnapshot]:
    """Real states of ``default`` (static plan, seed 3) at 07:00, 11:00, 15:30 and 20:00."""
    scenario = load_scenario("default")
    model = OperationModel(scenario, rng=np.random.default_rng(3))
    shots = []
    for minute in (420, 660, 930, 1200):
        model.run_minutes(minute - model.minute)
        shots.append(model.snapshot())
    return shots


def as_json(snap: OperationSnapshot) -> dict:
    return snap.model_dump(mode="json")


def current_version(server: Server) -> str:
    return httpx.get(f"{server.url}/v1/policy", headers=server.headers()).json()["version"]


# --------------------------------------------------------------------------- basics


def test_health_ready_and_policy(server: Server, bundles: Bundles) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.headers["x-policy-version"] == SRV1
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "policy_version": SRV1}
    r = httpx.get(f"{server.url}/v1/policy", headers=server.headers())
    assert r.status_code == 200
    info = r.json()
    assert info["version"] == SRV1 and r.headers["x-policy-version"] == SRV1
    assert info["scenario"] == "default"
    assert info["sectors"] == list(load_scenario("default").sector_names)
    assert info["manifest"]["feature_names"] == list(FEATURE_NAMES)
    assert Path(info["path"]) == bundles.v1


def test_recommend_end_to_end(
    server: Server, bundles: Bundles, snapshots: list[OperationSnapshot]
) -> None:
    scenario = load_scenario("default")
    policy = BundlePolicy(bundles.v1)
    for snap in snapshots:
        r = httpx.post(
            f"{server.url}/v1/recommend",
            json={"snapshot": as_json(snap), **FAST},
            headers=server.headers(),
            timeout=60,
        )
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["policy_version"] == SRV1 == r.headers["x-policy-version"]
        assert rec["policy"]["version"] == SRV1
        assert rec["minute"] == snap.minute
        assert [s["sector"] for s in rec["sectors"]] == list(scenario.sector_names)
        expected = policy.decide(snap)
        for s in rec["sectors"]:
            assert SectorAction.model_validate(s["action"]) == expected[s["sector"]]
            assert s["action_in_force"] == snap.sector(s["sector"]).action.model_dump()
            assert s["kinds"] == kinds(expected[s["sector"]], snap.sector(s["sector"]).action)
            assert s["message"].endswith(".") and len(s["message"]) > 20
            assert 0.0 < s["confidence"] <= 1.0
            assert set(s["probabilities"]) == {
                "lend_to", "lend_count", "flex_count", "overtime", "priority",
            }  # fmt: skip
            for field in s["probabilities"].values():
                assert math.isclose(sum(field.values()), 1.0, abs_tol=1e-4)
            assert len(s["drivers"]) == 3
            assert all(d["feature"] in FEATURE_NAMES for d in s["drivers"])
            contributions = [d["contribution"] for d in s["drivers"]]
            assert contributions == sorted(contributions, reverse=True)
            impact = s["impact"]
            assert impact["samples"] == 3 and impact["horizon_minutes"] == 45
            for key in ("slowdown_minutes_avoided", "sla_misses_avoided", "cost_saved"):
                i = impact[key]
                assert i["low"] <= i["mean"] + 1e-9 and i["mean"] <= i["high"] + 1e-9
            if s["kinds"] == ["no_change"]:
                assert impact["cost_saved"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
        changed = [s for s in rec["sectors"] if s["kinds"] != ["no_change"]]
        assert (rec["total_impact"] is None) == (not changed)


def test_impact_is_reproducible_and_matches_in_process_rollouts(
    server: Server, snapshots: list[OperationSnapshot], bundles: Bundles
) -> None:
    """Same request, same numbers (common random numbers, fixed seeds); and they are the
    numbers of the documented experiment run here."""
    snap = snapshots[1]
    body = {"snapshot": as_json(snap), **FAST, "seed": 11}
    a = httpx.post(f"{server.url}/v1/recommend", json=body, headers=server.headers(), timeout=60)
    b = httpx.post(f"{server.url}/v1/recommend", json=body, headers=server.headers(), timeout=60)
    ra, rb = a.json(), b.json()
    assert ra["recommendation_id"] != rb["recommendation_id"]
    assert [s["impact"] for s in ra["sectors"]] == [s["impact"] for s in rb["sectors"]]
    assert ra["impact_seed"] == 11
    policy = BundlePolicy(bundles.v1)
    report = estimate_impact(
        policy.scenario, snap, policy.decide(snap), horizon_minutes=45, samples=3, seed=11
    )
    for s in ra["sectors"]:
        mine = report.per_sector[s["sector"]]
        assert s["impact"]["sla_misses_avoided"]["mean"] == pytest.approx(
            mine.sla_misses_avoided.mean, abs=1e-4
        )
        assert s["impact"]["cost_saved"]["mean"] == pytest.approx(mine.cost_saved.mean, abs=1e-4)


def test_impact_scope_total_is_the_joint_arm_only(
    server: Server, snapshots: list[OperationSnapshot], bundles: Bundles
) -> None:
    snap = snapshots[2]
    body = {"snapshot": as_json(snap), **FAST, "impact_scope": "total", "seed": 3}
    r = httpx.post(f"{server.url}/v1/recommend", json=body, headers=server.headers(), timeout=60)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["impact_scope"] == "total"
    assert all(s["impact"] is None for s in rec["sectors"])
    policy = BundlePolicy(bundles.v1)
    report = estimate_impact(
        policy.scenario, snap, policy.decide(snap), horizon_minutes=45, samples=3, seed=3,
        per_sector=False,
    )  # fmt: skip
    if report.total is None:
        assert rec["total_impact"] is None
    else:
        assert rec["total_impact"]["cost_saved"]["mean"] == pytest.approx(
            report.total.cost_saved.mean, abs=1e-4
        )
        assert rec["total_impact"]["samples"] == 3


def test_forecast_end_to_end(
    server: Server, snapshots: list[OperationSnapshot], bundles: Bundles
) -> None:
    snap = snapshots[2]
    body = {"snapshot": as_json(snap), "hours": [2, 1], "samples": 3, "seed": 5}
    r = httpx.post(f"{server.url}/v1/forecast", json=body, headers=server.headers(), timeout=120)
    assert r.status_code == 200, r.text
    fc = r.json()
    assert fc["policy_version"] == SRV1 == r.headers["x-policy-version"]
    assert fc["hours"] == [1.0, 2.0] and fc["samples"] == 3
    assert [s["sector"] for s in fc["sectors"]] == list(load_scenario("default").sector_names)
    for s in [*fc["sectors"], fc["total"]]:
        for arm in ("policy", "no_action"):
            one, two = s[arm]
            assert (one["hours"], two["hours"]) == (1.0, 2.0)
            assert 0.0 <= one["p_any_miss"]["low"] <= one["p_any_miss"]["mean"] <= 1.0
            # cumulative over the horizon: never fewer misses or overtime at 2 h than at 1 h
            assert two["expected_misses"]["mean"] >= one["expected_misses"]["mean"]
            assert two["expected_overtime_hours"]["mean"] >= one["expected_overtime_hours"]["mean"]
    for arm in ("policy", "no_action"):
        total = fc["total"][arm][1]["expected_misses"]["mean"]
        parts = sum(s[arm][1]["expected_misses"]["mean"] for s in fc["sectors"])
        assert total == pytest.approx(parts, abs=1e-3)
    policy = BundlePolicy(bundles.v1)
    mine = forecast(policy.scenario, snap, policy, hours=[1, 2], samples=3, seed=5)
    assert fc["total"]["no_action"][1]["expected_misses"]["mean"] == pytest.approx(
        mine.no_action[1].total.expected_misses.mean, abs=1e-4
    )
    assert fc["total"]["policy"][1]["expected_overtime_hours"]["mean"] == pytest.approx(
        mine.policy[1].total.expected_overtime_hours.mean, abs=1e-4
    )


def test_bare_snapshot_body_and_openapi_examples(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    examples = spec["paths"]["/v1/recommend"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    bare = [e["value"] for e in examples.values() if "snapshot" not in e["value"]]
    assert bare, "a bare snapshot example"
    snap = OperationSnapshot.model_validate(bare[0])  # a real, valid snapshot
    assert snap.scenario == "default" and snap.scenario_digest == load_scenario("default").digest
    r = httpx.post(f"{server.url}/v1/recommend", json=bare[0], headers=server.headers(), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["sectors"][0]["impact"] is not None  # the server default: with impact
    assert httpx.get(f"{server.url}/docs").status_code == 200


# --------------------------------------------------------------------------- reload


def hammer(server: Server, body: dict, stop_event: threading.Event, out: list) -> None:
    """Post ``body`` until ``stop_event``; record (status, body version, header version)."""
    with httpx.Client(timeout=30) as client:
        while not stop_event.is_set():
            try:
                r = client.post(f"{server.url}/v1/recommend", json=body, headers=server.headers())
                version = r.json().get("policy_version") if r.status_code == 200 else None
                out.append((r.status_code, version, r.headers.get("x-policy-version")))
            except httpx.HTTPError as err:  # a failed request is a failure of the test
                out.append((0, repr(err), None))


def reload(server: Server, path: Path, key: str = ADMIN_KEY) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/policy/reload",
        json={"path": str(path)},
        headers=server.headers(key),
        timeout=60,
    )


def test_reload_under_concurrent_requests(
    server: Server, bundles: Bundles, snapshots: list[OperationSnapshot]
) -> None:
    body = {"snapshot": as_json(snapshots[1]), "impact": False}
    results: list = []
    stop_event = threading.Event()
    threads = [
        threading.Thread(target=hammer, args=(server, body, stop_event, results)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        for target, version in ((bundles.v2, SRV2), (bundles.v1, SRV1)) * 2:
            r = reload(server, target)
            assert r.status_code == 200, r.text
            assert r.json()["policy_version"] == version == r.headers["x-policy-version"]
            time.sleep(0.3)
    finally:
        stop_event.set()
        for t in threads:
            t.join()
    assert len(results) > 50
    failed = [x for x in results if x[0] != 200]
    assert not failed, failed[:5]
    versions = {v for _, v, _ in results}
    assert versions == {SRV1, SRV2}
    assert all(body_v == header_v for _, body_v, header_v in results)
    assert current_version(server) == SRV1


@pytest.mark.parametrize(
    ("which", "status", "message"),
    [
        ("corrupt", 422, "checksum mismatch for packing.onnx"),
        ("incompatible", 422, "feature list differs"),
        ("missing", 422, "not a directory"),
        ("other_scenario", 409, "is for scenario 'peak-surge'"),
    ],
)
def test_bad_bundle_is_refused_and_old_one_keeps_serving(
    server: Server,
    bundles: Bundles,
    snapshots: list[OperationSnapshot],
    tmp_path: Path,
    which: str,
    status: int,
    message: str,
) -> None:
    path = tmp_path / "nowhere" if which == "missing" else getattr(bundles, which)
    body = {"snapshot": as_json(snapshots[0]), "impact": False}
    results: list = []
    stop_event = threading.Event()
    thread = threading.Thread(target=hammer, args=(server, body, stop_event, results))
    thread.start()
    try:
        time.sleep(0.2)
        r = reload(server, path)
        time.sleep(0.2)
    finally:
        stop_event.set()
        thread.join()
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else detail[0]["msg"]
    assert message in text
    if status == 422:
        assert detail[0]["loc"] == ["body", "path"]
    assert results and all(x == (200, SRV1, SRV1) for x in results)
    assert current_version(server) == SRV1


# --------------------------------------------------------------------------- auth, input


def test_auth(server: Server, bundles: Bundles, snapshots: list[OperationSnapshot]) -> None:
    body = {"snapshot": as_json(snapshots[0]), "impact": False}
    url = server.url
    for key in (None, "wrong"):
        h = server.headers(key)
        assert httpx.post(f"{url}/v1/recommend", json=body, headers=h).status_code == 401
        assert httpx.post(f"{url}/v1/forecast", json=body["snapshot"], headers=h).status_code == 401
        assert httpx.get(f"{url}/v1/policy", headers=h).status_code == 401
        fb = {"recommendation_id": "x", "accepted": True}
        assert httpx.post(f"{url}/v1/feedback", json=fb, headers=h).status_code == 401
        assert reload(server, bundles.v1, key or "").status_code == 401
    r = reload(server, bundles.v2, API_KEY)
    assert r.status_code == 403 and "admin key" in r.json()["detail"]
    assert current_version(server) == SRV1
    admin = server.headers(ADMIN_KEY)
    assert httpx.post(f"{url}/v1/recommend", json=body, headers=admin).status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200


def _edit(snap: OperationSnapshot, fn) -> dict:
    data = as_json(snap)
    fn(data)
    return data


BAD_INPUTS = [
    ("unknown sector", lambda d: d["sectors"][0].update(name="teleport"), "sectors"),
    ("negative count", lambda d: d["sectors"][3]["queue"]["standard"].__setitem__(2, -4), "queue"),
    ("negative worker count", lambda d: d["workers"][0].update(count=-1), "count"),
    ("wrong schema version", lambda d: d.update(schema_version=2), "schema_version"),
    ("another scenario", lambda d: d.update(scenario="claims"), "scenario"),
    ("another digest", lambda d: d.update(scenario_digest="0" * 16), "scenario_digest"),
    ("beyond the horizon", lambda d: d.update(minute=5000.0), "minute"),
    ("unknown shift", lambda d: d["workers"][0].update(shift="graveyard"), "shift"),
    ("unknown lend target", lambda d: d["sectors"][1]["action"].update(lend_to="moon"), "lend_to"),
    ("missing field", lambda d: d.pop("workers"), "workers"),
    ("huge rate", lambda d: d["sectors"][0].update(arrival_rate_per_hour=1e300), "arrival_rate"),
]


@pytest.mark.parametrize(("name", "edit", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_snapshot_is_422_naming_the_field(
    server: Server, snapshots: list[OperationSnapshot], name: str, edit, field: str
) -> None:
    data = _edit(snapshots[1], edit)
    for route in ("/v1/recommend", "/v1/forecast"):
        for body, head in ((data, ["body", "snapshot"]), ({"snapshot": data}, ["body", "request"])):
            r = httpx.post(f"{server.url}{route}", json=body, headers=server.headers(), timeout=30)
            assert r.status_code == 422, (route, r.text)
            errors = r.json()["detail"]
            assert any(
                e["loc"][: len(head)] == head and any(field in str(p) for p in e["loc"])
                for e in errors
            ), errors


def test_nan_and_in_service_mismatch_are_422(
    server: Server, snapshots: list[OperationSnapshot]
) -> None:
    data = as_json(snapshots[1])
    raw = json.dumps(data).replace('"minute": ' + json.dumps(data["minute"]), '"minute": NaN')
    assert "NaN" in raw
    r = httpx.post(
        f"{server.url}/v1/recommend",
        content=raw,
        headers={**server.headers(), "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "snapshot", "minute"]
    busy = next(s for s in data["sectors"] if sum(map(sum, s["in_service"].values())))
    cls = next(c for c, v in busy["in_service"].items() if sum(v))
    busy["in_service"][cls][3] += 5
    r = httpx.post(f"{server.url}/v1/recommend", json=data, headers=server.headers())
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    index = data["sectors"].index(busy)
    assert err["loc"] == ["body", "snapshot", "sectors", index, "in_service"]
    assert "workers busy there" in err["msg"]


@pytest.mark.parametrize(
    ("route", "options", "field"),
    [
        ("/v1/recommend", {"samples": 100}, "samples"),  # above the server's max_samples
        ("/v1/recommend", {"samples": 1}, "samples"),
        ("/v1/recommend", {"horizon_minutes": 2000}, "horizon_minutes"),
        ("/v1/recommend", {"impact": "often"}, "impact"),
        ("/v1/forecast", {"hours": [0]}, "hours"),
        ("/v1/forecast", {"hours": [9]}, "hours"),  # above max_horizon_minutes
        ("/v1/forecast", {"surprise": 1}, "surprise"),
    ],
)
def test_bad_options_are_422(
    server: Server, snapshots: list[OperationSnapshot], route: str, options: dict, field: str
) -> None:
    body = {"snapshot": as_json(snapshots[0]), **options}
    r = httpx.post(f"{server.url}{route}", json=body, headers=server.headers())
    assert r.status_code == 422, r.text
    assert any(field in map(str, e["loc"]) for e in r.json()["detail"]), r.text


def test_oversized_body_is_413(server: Server) -> None:
    big = b'{"x": "' + b"a" * MAX_BODY + b'"}'
    headers = {**server.headers(), "content-type": "application/json"}
    r = httpx.post(f"{server.url}/v1/recommend", content=big, headers=headers)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    r = httpx.post(f"{server.url}/v1/forecast", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert httpx.get(f"{server.url}/healthz").status_code == 200


# --------------------------------------------------------------------------- log, metrics


def test_feedback_is_stored_with_the_decision(
    server: Server, snapshots: list[OperationSnapshot]
) -> None:
    snap = snapshots[3]
    r = httpx.post(
        f"{server.url}/v1/recommend",
        json={"snapshot": as_json(snap), "impact": False},
        headers=server.headers(),
    )
    rec_id = r.json()["recommendation_id"]
    fb = {"recommendation_id": rec_id, "accepted": False, "comment": "no spare staff"}
    r = httpx.post(f"{server.url}/v1/feedback", json=fb, headers=server.headers())
    assert r.status_code == 200 and r.json() == {"recommendation_id": rec_id, "stored": True}
    unknown = {"recommendation_id": "no-such-id", "accepted": True}
    r = httpx.post(f"{server.url}/v1/feedback", json=unknown, headers=server.headers())
    assert r.status_code == 404
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    (logged,) = [x for x in records if x.get("id") == rec_id]
    assert logged["type"] == "recommendation"
    assert logged["policy"]["version"] == SRV1
    assert OperationSnapshot.model_validate(logged["snapshot"]) == snap
    assert logged["recommendation"]["recommendation_id"] == rec_id
    (feedback,) = [x for x in records if x.get("recommendation_id") == rec_id and "accepted" in x]
    assert feedback["type"] == "feedback"
    assert feedback["accepted"] is False and feedback["comment"] == "no spare staff"
    # another process (a restarted server) finds the recommendation in the file
    assert DecisionLog(server.log).known(rec_id)


def test_metrics_count_requests_and_recommendations(
    server: Server, snapshots: list[OperationSnapshot]
) -> None:
    body = {"snapshot": as_json(snapshots[0]), "impact": False}
    r = httpx.post(f"{server.url}/v1/recommend", json=body, headers=server.headers())
    kinds_seen = {k for s in r.json()["sectors"] for k in s["kinds"]}
    text = httpx.get(f"{server.url}/metrics").text
    lines = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    key = 'synctwin_http_requests_total{method="POST",route="/v1/recommend",status="200"}'
    assert float(lines[key]) >= 1
    assert (
        'synctwin_http_request_duration_seconds_bucket{le="0.1",method="POST",'
        'route="/v1/recommend",status="200"}' in lines
    )
    for k in kinds_seen:
        assert float(lines[f'synctwin_recommendations_total{{kind="{k}"}}']) >= 1
    info = [k for k in lines if k.startswith("synctwin_policy_info")]
    assert len(info) == 1 and f'version="{SRV1}"' in info[0] and float(lines[info[0]]) == 1.0
    assert any(
        k.startswith(
            'synctwin_http_requests_total{method="POST",route="/v1/recommend",status="422"'
        )
        for k in lines
    )


# --------------------------------------------------------------------------- schemathesis


def test_openapi_contract_no_server_errors(server: Server, tmp_path: Path) -> None:
    """Schemathesis against /openapi.json: the examples, coverage (boundary values, wrong
    types, missing fields) and fuzzing phases on every route, with the admin key so the
    admin route is exercised too. No answer may be a 5xx. (Its pytest plugin does not
    support pytest 9 yet, hence the command line; the run is bounded by --max-examples.)"""
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "10",
            "--seed",
            "0",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--header",
            f"X-API-Key: {ADMIN_KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its example database, not in the work tree
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Selected: 8/8" in proc.stdout and "Tested: 8" in proc.stdout
    assert current_version(server) == SRV1


# --------------------------------------------------------------------------- processes


def test_server_imports_neither_torch_nor_ray(bundles: Bundles) -> None:
    code = (
        "import sys; from policies.server import Settings, create_app; "
        f"create_app(Settings(policy={str(bundles.v1)!r})); "
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "/no/such/bundle"], "not a directory"),
        (["--policy", "{corrupt}"], "checksum mismatch"),
        (["--policy", "{v1}", "--port", "70000"], "port"),
        (["--policy", "{v1}", "--api-key", "same", "--admin-key", "same"], "must differ"),
    ],
)
def test_serve_refuses_bad_settings_with_exit_2(
    bundles: Bundles, args: list[str], message: str
) -> None:
    args = [a.format(v1=bundles.v1, corrupt=bundles.corrupt) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reload_reaches_every_worker(
    bundles: Bundles, snapshots: list[OperationSnapshot], tmp_path: Path
) -> None:
    """With --workers 2, a reload served by one worker reaches the other (shared state file)."""
    srv = start_server(bundles.v1, tmp_path / "log.jsonl", "--workers", "2")
    try:
        assert reload(srv, bundles.v2).status_code == 200
        body = {"snapshot": as_json(snapshots[0]), "impact": False}
        deadline = time.monotonic() + 30  # the other worker polls the state file every second
        streak = 0
        while streak < 30 and time.monotonic() < deadline:
            # a new connection each time: both workers answer some
            r = httpx.post(f"{srv.url}/v1/recommend", json=body, headers=srv.headers())
            assert r.status_code == 200
            streak = streak + 1 if r.json()["policy_version"] == SRV2 else 0
            if not streak:
                time.sleep(0.2)
        assert streak >= 30, "some worker still serves srv-1"
    finally:
        stop(srv.proc)


@pytest.mark.parametrize(
    ("cpus", "message"),
    [("4096", "CPU 4096 is not available"), ("1;2", "expected CPU numbers such as")],
)
def test_serve_refuses_rollout_cpus_it_cannot_use(
    bundles: Bundles, cpus: str, message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "serve", "--policy", str(bundles.v1)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYNCTWIN_ROLLOUT_CPUS": cpus},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rollout_cpus" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_serve_smoke(bundles: Bundles, tmp_path: Path) -> None:
    """``synctwin bench serve`` with a tiny budget writes the report with every number."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "bench",
            "serve",
            "--policy",
            str(bundles.v1),
            "--out",
            str(out),
            "--requests",
            "20",
            "--impact-requests",
            "2",
            "--clients",
            "2",
            "--seconds",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for key in ("no_impact", "impact_default", "impact_fast", "impact_total_fast"):
        seq = result[key]["sequential"]
        assert 0 < seq["p50_ms"] <= seq["p99_ms"]
        assert result[key]["concurrent"]["requests_per_second"] > 0
    assert 0 < result["cold_start_seconds"] < 60
    assert 30 < result["rss_mb"] <= result["peak_rss_mb"]
    assert set(result["met"]) >= {
        "no_impact_p99_ms",
        "rss_mb",
        "cold_start_seconds",
        "policy_p99_during_impact_vs_idle",
    }
    burst = result["policy_during_impact"]
    assert burst["impact_requests_during"] > 0 and burst["impact_errors_during"] == 0
    assert 0 < burst["idle"]["p99_ms"] and 0 < burst["during_impact"]["p99_ms"]
    # rollouts run in the rollout host's worker processes, which did the impact work
    assert result["rollout_workers"]["processes"] == os.cpu_count()
    assert result["rollout_host"]["rss_mb"] > 30
    assert result["impact_default"]["sequential"]["rollout_cpu_ms_per_request"] > 0
    # the trade-off run: rollouts kept on one CPU (a second server), given a CPU to spare
    if len(os.sched_getaffinity(0)) < 2:
        assert "rollouts_on_one_cpu" not in result
        return
    pinned = result["rollouts_on_one_cpu"]
    assert pinned["cpu"] == max(os.sched_getaffinity(0))
    assert 0 < pinned["impact_default"]["p50_ms"] <= pinned["impact_default"]["p99_ms"]
    assert pinned["policy_during_impact"]["impact_requests_during"] > 0
    assert pinned["policy_during_impact"]["impact_errors_during"] == 0


@pytest.mark.slow
def test_ray_serve_deployment(bundles: Bundles, snapshots: list[OperationSnapshot]) -> None:
    """``synctwin serve --ray`` on a local Ray: the same API behind Ray Serve's proxy."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "serve",
            "--ray",
            "--policy",
            str(bundles.v1),
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, 180, interval=0.5, request_timeout=2)
        body = {"snapshot": as_json(snapshots[1]), "impact": True, "samples": 2}
        r = httpx.post(f"{url}/v1/recommend", json=body, headers={"X-API-Key": API_KEY}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["policy_version"] == SRV1 == r.headers["x-policy-version"]
        assert r.json()["sectors"][0]["impact"]["samples"] == 2
        assert httpx.post(f"{url}/v1/recommend", json=body).status_code == 401
    finally:
        stop(proc)


# --------------------------------------------------------------------------- the pieces


def test_intervals() -> None:
    i = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert i.mean == 2.5
    half = scipy_stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2  # t * s / sqrt(4)
    assert (i.low, i.high) == pytest.approx((2.5 - half, 2.5 + half))
    assert mean_interval([7.0, 7.0]).low == 7.0 == mean_interval([7.0, 7.0]).high
    p = proportion_interval(0, 8)
    assert p.mean == 0.0 and p.low == 0.0 and 0.3 < p.high < 0.35  # Wilson, not [0, 0]
    assert proportion_interval(8, 8).high == 1.0


def test_impact_of_no_change_is_zero_and_of_help_is_positive(
    snapshots: list[OperationSnapshot],
) -> None:
    scenario = load_scenario("default")
    snap = snapshots[1]
    in_force = {s.name: s.action for s in snap.sectors}
    report = estimate_impact(scenario, snap, in_force, horizon_minutes=30, samples=2)
    assert report.total is None
    assert all(i.cost_saved.mean == 0.0 for i in report.per_sector.values())
    # a packing backlog of 400 orders due in 1-2 hours: shipping lends packing 5 workers
    data = as_json(snap)
    packing = next(s for s in data["sectors"] if s["name"] == "packing")
    packing["queue"]["standard"][3] += 400
    jammed = OperationSnapshot.model_validate(data)
    help_ = {"shipping": SectorAction(lend_to="packing", lend_count=5)}
    report = estimate_impact(scenario, jammed, help_, horizon_minutes=90, samples=4)
    impact = report.per_sector["shipping"]
    assert impact.focus_sector == "packing"
    assert impact.slowdown_minutes_avoided.low > 0  # packing's queue clears faster
    assert impact.wait_minutes_without > impact.slowdown_minutes_avoided.mean
    assert report.total == impact


def test_batched_decisions_equal_the_runtime_and_occlusion_is_as_documented(
    bundles: Bundles, snapshots: list[OperationSnapshot]
) -> None:
    policy = BundlePolicy(bundles.v1)
    reference = reference_day(policy.scenario).features
    for snap in snapshots:
        expected = policy.decisions(snap)
        feats = featurizer(policy.scenario).matrix(snap)
        got = decide_and_explain(policy, feats, reference)
        for i, (sector, d) in enumerate(expected.items()):
            g = got[sector]
            assert g.action == d.action and (g.vector == d.vector).all()
            assert g.confidence == pytest.approx(d.confidence, rel=1e-5)
            for p, q in zip(g.probabilities, d.probabilities, strict=True):
                np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)
            # the top driver's contribution, recomputed through the runtime's own path
            top = g.drivers[0]
            j = FEATURE_NAMES.index(top.name)
            occluded = feats.copy()
            occluded[i, j] = reference[i, j]

            def logp(matrix: np.ndarray, sector: str = sector, vector=d.vector) -> float:
                logits = policy.logits_from_features(matrix)[sector].astype(np.float64)
                fields = np.split(logits, np.cumsum(policy.codecs[sector].nvec)[:-1])
                return sum(
                    f[k] - f.max() - np.log(np.exp(f - f.max()).sum())
                    for f, k in zip(fields, vector, strict=True)
                )

            assert top.contribution == pytest.approx(logp(feats) - logp(occluded), abs=1e-4)
            assert top.contribution >= g.drivers[-1].contribution


@pytest.mark.parametrize(
    ("recommended", "in_force", "expected_kinds", "words"),
    [
        (SectorAction(lend_to="packing", lend_count=3), SectorAction(), ["lend"],
         "Move 3 workers from Shipping to Packing now"),
        (SectorAction(), SectorAction(lend_to="packing", lend_count=3), ["recall"],
         "bring Shipping's 3 workers back from Packing"),
        (SectorAction(flex_count=2), SectorAction(), ["flex"], "Call 2 agency workers to Shipping"),
        (SectorAction(), SectorAction(flex_count=2), ["flex"], "Release 2 agency workers"),
        (SectorAction(overtime=True), SectorAction(), ["overtime"], "Authorise overtime"),
        (SectorAction(), SectorAction(overtime=True), ["overtime"], "Stop overtime"),
        (SectorAction(priority="edd"), SectorAction(), ["priority"], "earliest-due-first"),
        (SectorAction(), SectorAction(), ["no_change"], "No change for Shipping"),
    ],
)  # fmt: skip
def test_messages(
    snapshots: list[OperationSnapshot],
    recommended: SectorAction,
    in_force: SectorAction,
    expected_kinds: list[str],
    words: str,
) -> None:
    scenario = load_scenario("default")
    assert kinds(recommended, in_force) == expected_kinds
    text = message(scenario, snapshots[1], "shipping", recommended, in_force)
    assert words.lower() in text.lower()
    assert text.split(".")[0].split(" is ")[0] in ("Packing", "Shipping")


def test_message_quotes_the_predicted_impact(snapshots: list[OperationSnapshot]) -> None:
    scenario = load_scenario("default")
    data = as_json(snapshots[1])
    next(s for s in data["sectors"] if s["name"] == "packing")["queue"]["standard"][3] += 400
    jammed = OperationSnapshot.model_validate(data)
    action = SectorAction(lend_to="packing", lend_count=5)
    report = estimate_impact(scenario, jammed, {"shipping": action}, horizon_minutes=90, samples=4)
    impact = report.per_sector["shipping"]
    text = message(scenario, jammed, "shipping", action, SectorAction(), impact)
    assert text.startswith("Packing is approaching a bottleneck (4")
    minutes = round(impact.slowdown_minutes_avoided.mean)
    assert f"to avoid a {minutes}-minute slowdown in Packing" in text
    assert "over the next 90 min" in text


def test_decision_log_without_a_file(tmp_path: Path) -> None:
    log = DecisionLog(None)
    log.record("a", {"name": "n", "version": "1"}, '{"minute": 1}', '{"ok": true}')
    assert log.feedback("a", True, None) and not log.feedback("b", True, None)
    first, second = log.records()
    assert first["snapshot"] == {"minute": 1} and first["recommendation"] == {"ok": True}
    assert second["recommendation_id"] == "a" and second["accepted"] is True


class BundlePolicyStub:
    """A controller that keeps the actions in force."""

    def decide(self, snapshot: OperationSnapshot) -> dict[str, SectorAction]:
        return {s.name: s.action for s in snapshot.sectors}
