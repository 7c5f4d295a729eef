"""Advice a floor manager can act on: real answers, read against the rules they promise.

Real answers of ``POST /v1/recommend`` (the app in-process through FastAPI's
TestClient, serving the shipped bundle ``policies/default``) at several times of day of
``default``, and of :func:`policies.advice.advise` with the ``threshold`` baseline on
other built-ins, at the server's default samples and horizon. Every answer is checked
for: ranking by predicted cost saved, the minimum saving with its interval above 0,
the same sign and number in the words as in the JSON, confidence in words, reasons
that contributed and are worded in the floor's terms, plan rules marked, and proposals
that cost more than they save not recommended and counted in ``/metrics``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run
from fastapi.testclient import TestClient

from agents import make_controller
from policies.advice import (
    HOLD_HEADLINE,
    MIN_SAVING,
    UNRANKED_HEADLINE,
    Advice,
    AdviceOptions,
    advise,
)
from policies.feedback import advice_kind_of, feedback_report
from policies.reasons import MIN_CONTRIBUTION
from policies.schemas import ActionOut, DeclinedOut, ImpactOut
from policies.server import ClientError, Settings, create_app, load_served
from policies.server.checks import check_rollout_cost
from policies.server.config import MAX_ROLLOUT_COST
from twin.features import FEATURE_NAMES
from twin.model import OperationModel
from twin.scenario import Scenario, load_scenario
from twin.snapshot import OperationSnapshot

#: ``default`` (seed 0, static plan) at 10:00, 11:30, 13:00 and 20:30: the four states
#: of the issue; 20:30 has a change worth making, 10:00 has none.
DEFAULT_MINUTES = (600, 690, 780, 1230)
#: Other built-ins advised by the threshold baseline, at morning, midday and evening.
OTHER_BUILTINS = ("peak-surge", "breakdowns", "claims")
OTHER_MINUTES = (600, 780, 1080)

_SAVES = re.compile(r"saves about ([\d,]+)")
_COSTS = re.compile(r"costs about ([\d,]+) more")
_FEWER_MISSES = re.compile(r"about (\d+) fewer SLA misses")
_MORE_MISSES = re.compile(r"about (\d+) more SLA misses")
_FEWER_OT = re.compile(r"about ([\d.]+) fewer overtime hours")
_MORE_OT = re.compile(r"about ([\d.]+) more overtime hours")


def states(scenario: Scenario, minutes: tuple[int, ...], seed: int = 0) -> list[OperationSnapshot]:
    model = OperationModel(scenario, rng=np.random.default_rng(seed))
    out = []
    for minute in minutes:
        model.run_minutes(minute - model.minute)
        out.append(model.snapshot())
    return out


@pytest.fixture(scope="module")
def client(policy_bundle: Path) -> TestClient:
    return TestClient(create_app(Settings(policy=policy_bundle), load_served(policy_bundle)))


@pytest.fixture(scope="module")
def answers(client: TestClient) -> list[tuple[OperationSnapshot, dict]]:
    """The server's answers at the four states of ``default`` (server defaults)."""
    out = []
    for snap in states(load_scenario("default"), DEFAULT_MINUTES):
        r = client.post("/v1/recommend", json=snap.model_dump(mode="json"))
        assert r.status_code == 200, r.text
        out.append((snap, r.json()))
    return out


def money(text: str) -> int:
    return int(text.replace(",", ""))


def check_words_match_numbers(text: str, cost: dict, misses: dict, overtime: dict) -> None:
    """The sentence says what the numbers say, savings positive, in both."""
    saves, costs = _SAVES.search(text), _COSTS.search(text)
    assert not (saves and costs), text
    if saves:
        assert cost["mean"] > 0 and money(saves.group(1)) == round(cost["mean"]), text
    if costs:
        assert cost["mean"] < 0 and money(costs.group(1)) == round(-cost["mean"]), text
    if abs(round(cost["mean"])) >= 1:
        assert saves or costs, text
    for pattern, sign, value in (
        (_FEWER_MISSES, 1, misses),
        (_MORE_MISSES, -1, misses),
        (_FEWER_OT, 1, overtime),
        (_MORE_OT, -1, overtime),
    ):
        found = pattern.search(text)
        if found:
            assert sign * value["mean"] > 0, text
            assert float(found.group(1)) == pytest.approx(abs(value["mean"]), abs=0.51), text
    assert "net cost" not in text


def check_answer(answer: dict, snap: OperationSnapshot, scenario: Scenario) -> None:
    """Every rule of a ranked answer (the JSON shape of POST /v1/recommend)."""
    actions, declined = answer["actions"], answer["not_recommended"]
    minimum = answer["min_saving"]
    # ranking and thresholds
    assert [a["rank"] for a in actions] == list(range(1, len(actions) + 1))
    saved = [a["cost_saved"]["mean"] for a in actions]
    assert saved == sorted(saved, reverse=True)
    for a in actions:
        assert a["cost_saved"]["mean"] >= minimum and a["cost_saved"]["low"] > 0, a
    for d in declined:
        c = d["cost_saved"]
        assert c["mean"] < minimum or c["low"] <= 0, d
        assert (d["reason"] == "costs_more") == (c["mean"] < 0), d
    # every change the policy proposes is either ranked or declined, never silent
    changed = {s["sector"] for s in answer["sectors"] if s["kinds"] != ["no_change"]}
    listed = {x["sectors"][0] for x in actions + declined}
    assert listed == changed
    # status and headline
    if actions:
        top = actions[0]
        assert answer["status"] == "act"
        head = answer["headline"]
        assert top["change"][1:] in head  # the top change, in the headline
        check_words_match_numbers(
            head, top["cost_saved"], top["sla_misses_avoided"], top["overtime_hours_saved"]
        )
        assert _SAVES.search(head) and head.endswith(f"({top['certainty']}).")
    else:
        assert answer["status"] == "hold" and answer["headline"] == HOLD_HEADLINE
    # words match numbers, confidence in words
    for x in actions + declined:
        check_words_match_numbers(
            x["text"], x["cost_saved"], x["sla_misses_avoided"], x["overtime_hours_saved"]
        )
        assert x["text"].startswith(x["change"])
    for a in actions:
        likely = a["cost_saved"]["low"] > 0 and (a["confidence"] is None or a["confidence"] >= 0.5)
        assert a["certainty"] == ("likely" if likely else "uncertain")
        assert a["certainty"] in a["text"]
    for s in answer["sectors"]:
        if s["impact"] is not None:
            i = s["impact"]
            check_words_match_numbers(
                s["message"], i["cost_saved"], i["sla_misses_avoided"], i["overtime_hours_saved"]
            )
    # reasons: only those that contributed, in the floor's words, not feature names
    for s in answer["sectors"]:
        drivers = {d["feature"]: d["contribution"] for d in s["drivers"]}
        for r in s["reasons"]:
            assert r["contribution"] > MIN_CONTRIBUTION
            assert drivers[r["feature"]] == pytest.approx(r["contribution"], abs=1e-6)
            words = set(re.findall(r"[a-z0-9_]+", r["text"].lower()))
            assert not words & set(FEATURE_NAMES), r["text"]
        if any(c > MIN_CONTRIBUTION for c in drivers.values()):
            assert s["reasons"], s  # a decision with contributing drivers gives its reasons
    # plan rules: a change away from an explicit plan rule is marked
    for x in actions + declined:
        for sector, action in x.get("actions", {}).items():
            plan = scenario.plan.get(sector)
            if plan is not None and "overtime" in plan.model_fields_set:
                if action["overtime"] != plan.overtime and snap.sector(sector).action.overtime:
                    assert x["against_plan"], x
        if x["against_plan"]:
            assert "Against the plan: " in x["text"]


def test_real_answers_of_default_follow_the_rules(
    answers: list[tuple[OperationSnapshot, dict]],
) -> None:
    scenario = load_scenario("default")
    for snap, answer in answers:
        check_answer(answer, snap, scenario)
    statuses = [a["status"] for _, a in answers]
    assert "act" in statuses and "hold" in statuses  # both kinds of answer occur here
    # the noise is gone: stopping shipping's overtime against the plan, with a
    # negligible effect, is never an action, and is marked whenever it is proposed
    for _, answer in answers:
        for a in answer["actions"]:
            assert "Stop overtime in Shipping" not in a["change"]
        for d in answer["not_recommended"]:
            if "Stop overtime in Shipping" in d["change"]:
                assert d["against_plan"] == ["the plan keeps overtime authorised in Shipping"]
        for sec in answer["sectors"]:
            if "Stop overtime in Shipping" in sec["message"]:
                assert sec["message"].endswith(
                    "Against the plan: the plan keeps overtime authorised in Shipping."
                )
    # an action's reasons include how much work is due, in items
    acting = [a for _, ans in answers for a in ans["actions"]]
    assert any("items" in r["text"] for a in acting for r in a["reasons"])


def test_proposals_that_cost_more_are_counted_in_metrics(
    client: TestClient, answers: list[tuple[OperationSnapshot, dict]]
) -> None:
    declined = [d for _, a in answers for d in a["not_recommended"]]
    costs_more = sum(d["reason"] == "costs_more" for d in declined)
    assert costs_more >= 1  # 13:00: moving 3 workers to Picking costs about 16 more
    lines = dict(
        line.rsplit(" ", 1)
        for line in client.get("/metrics").text.splitlines()
        if line and not line.startswith("#")
    )
    for reason in ("costs_more", "below_minimum", "uncertain"):
        seen = sum(d["reason"] == reason for d in declined)
        key = f'synctwin_advice_not_recommended_total{{reason="{reason}"}}'
        assert float(lines[key]) == seen
    statuses = [a["status"] for _, a in answers]
    for status in ("act", "hold"):
        key = f'synctwin_advice_answers_total{{status="{status}"}}'
        assert float(lines[key]) == statuses.count(status)


def test_the_minimum_saving_is_configurable_and_detail_optional(
    client: TestClient, answers: list[tuple[OperationSnapshot, dict]]
) -> None:
    snap, acting = next((s, a) for s, a in answers if a["status"] == "act")
    body = snap.model_dump(mode="json")
    strict = client.post(
        "/v1/recommend", json={"snapshot": body, "min_saving": 1e6, "detail": False}
    ).json()
    assert strict["status"] == "hold" and strict["actions"] == [] and strict["sectors"] == []
    assert strict["min_saving"] == 1e6
    was_ranked = {a["change"] for a in acting["actions"]}
    below = {d["change"] for d in strict["not_recommended"] if d["reason"] == "below_minimum"}
    assert was_ranked <= below
    assert acting["min_saving"] == MIN_SAVING
    unranked = client.post("/v1/recommend", json={"snapshot": body, "impact": False}).json()
    assert unranked["status"] == "unranked" and unranked["headline"] == UNRANKED_HEADLINE
    assert unranked["actions"] == [] and unranked["not_recommended"] == []
    assert len(unranked["sectors"]) == len(snap.sectors)


def test_advice_on_other_builtins_follows_the_rules() -> None:
    """advise() with the threshold baseline (no bundle for these scenarios ships)."""
    answers = []
    for name in OTHER_BUILTINS:
        scenario = load_scenario(name)
        controller = make_controller("threshold", scenario, 0)
        for snap in states(scenario, OTHER_MINUTES):
            advice = advise(controller, snap, AdviceOptions(), scenario=scenario)
            assert all(a.confidence is None and not a.reasons for a in advice.sectors)
            answer = _shape(advice)
            check_answer(answer, snap, scenario)
            answers.append(answer)
    assert {"act", "hold"} <= {a["status"] for a in answers}
    # peak-surge at 13:00: stopping pickers' overtime saves, against the peak-day plan
    marked = [x for a in answers for x in a["actions"] if x["against_plan"]]
    assert marked and all(
        "(against the plan)" in a["headline"]
        for a in answers
        if a["actions"] and a["actions"][0]["against_plan"]
    )


def _shape(advice: Advice) -> dict:
    """The JSON parts of an advice from a controller that is not a bundle (which has no
    probabilities, so not the server's whole ``Recommendation``)."""
    return {
        "status": advice.status,
        "headline": advice.headline,
        "min_saving": advice.options.min_saving,
        "actions": [ActionOut.of(a).model_dump(mode="json") for a in advice.actions],
        "not_recommended": [DeclinedOut.of(d).model_dump(mode="json") for d in advice.declined],
        "sectors": [
            {
                "sector": a.sector,
                "kinds": list(a.kinds),
                "message": a.message,
                "drivers": [],
                "reasons": [],
                "impact": ImpactOut.of(a.impact).model_dump(mode="json") if a.impact else None,
            }
            for a in advice.sectors
        ],
    }


def test_a_request_beyond_the_rollout_budget_is_refused_naming_the_limit(
    client: TestClient, answers: list[tuple[OperationSnapshot, dict]]
) -> None:
    """items x samples x horizon beyond max_rollout_cost: a 422 before any rollout runs."""
    snap = answers[0][0]
    data = snap.model_dump(mode="json")
    picking = next(s for s in data["sectors"] if s["name"] == "picking")
    picking["queue"]["standard"][6] += 20_000  # a big (valid) backlog, due in 480+ min
    big = OperationSnapshot.model_validate(data)
    items = sum(st.queued + st.serving for st in big.sectors)
    assert items * 32 * 480 > MAX_ROLLOUT_COST >= items * 8 * 90
    t0 = time.perf_counter()
    r = client.post("/v1/recommend", json={"snapshot": data, "samples": 32, "horizon_minutes": 480})
    assert time.perf_counter() - t0 < 5.0  # refused up front, not after the rollouts
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["type"] == "rollout_cost" and err["loc"] == ["body", "request"]
    assert f"max_rollout_cost of {MAX_ROLLOUT_COST:,}" in err["msg"]
    assert f"{items:,} x 32 x 480" in err["msg"]
    r = client.post("/v1/forecast", json={"snapshot": data, "samples": 32, "hours": [8]})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "rollout_cost"
    # without rollouts the same snapshot is answered
    r = client.post("/v1/recommend", json={"snapshot": data, "impact": False})
    assert r.status_code == 200 and r.json()["status"] == "unranked"


def test_the_rollout_budget_boundary() -> None:
    snap = states(load_scenario("default"), (600,))[0]
    items = max(1, sum(st.queued + st.serving for st in snap.sectors))
    settings = Settings(policy=Path("unused"), max_rollout_cost=items * 8 * 90)
    check_rollout_cost(snap, 8, 90, settings, ["body"])  # exactly at the budget: fine
    with pytest.raises(ClientError) as err:
        check_rollout_cost(snap, 8, 91, settings, ["body"])
    assert err.value.kind == "rollout_cost" and err.value.loc == ["body"]


def test_feedback_by_kind_of_advice_in_metrics_and_the_report(
    policy_bundle: Path, answers: list[tuple[OperationSnapshot, dict]], tmp_path: Path
) -> None:
    """Accepted/rejected per kind of advice: in /metrics, and `synctwin feedback-report LOG`
    run as users run it (a subprocess, the log given relative to its working directory)."""
    log = tmp_path / "decisions.jsonl"
    app = create_app(Settings(policy=policy_bundle, log=log), load_served(policy_bundle))
    client = TestClient(app)
    acting = next(s for s, a in answers if a["status"] == "act")
    holding = next(s for s, a in answers if a["status"] == "hold")
    given = []
    for snap, accepted in ((acting, True), (acting, False), (holding, False), (acting, True)):
        r = client.post("/v1/recommend", json=snap.model_dump(mode="json"))
        rec = r.json()
        given.append((rec, accepted))
        fb = {"recommendation_id": rec["recommendation_id"], "accepted": accepted}
        assert client.post("/v1/feedback", json=fb).status_code == 200
    top = advice_kind_of(given[0][0])
    assert top == "+".join(given[0][0]["actions"][0]["kinds"]) and top != "hold"
    assert advice_kind_of(given[2][0]) == "hold"
    lines = dict(
        line.rsplit(" ", 1)
        for line in client.get("/metrics").text.splitlines()
        if line and not line.startswith("#")
    )
    metric = "synctwin_feedback_by_advice_total"
    assert float(lines[f'{metric}{{accepted="true",advice="{top}"}}']) == 2
    assert float(lines[f'{metric}{{accepted="false",advice="{top}"}}']) == 1
    assert float(lines[f'{metric}{{accepted="false",advice="hold"}}']) == 1
    # one more recommendation without feedback, and a line that is not a record
    client.post("/v1/recommend", json=holding.model_dump(mode="json"))
    with log.open("a") as f:
        f.write("not json\n")

    report = feedback_report(log)
    rows = {k.kind: k for k in report.kinds}
    assert (rows[top].recommendations, rows[top].accepted, rows[top].rejected) == (3, 2, 1)
    assert (rows["hold"].recommendations, rows["hold"].accepted, rows["hold"].rejected) == (2, 0, 1)
    assert rows[top].acceptance.mean == pytest.approx(2 / 3)
    assert report.bad_lines == 1 and report.unmatched_feedback == 0

    out = run(tmp_path, "feedback-report", "decisions.jsonl").stdout
    table = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if (cells := [c.strip() for c in line.strip("│┃ ").split("│")])
        and cells[0] in (top, "hold")
    }
    assert table[top][:4] == ["3", "3", "2", "1"] and table[top][4].startswith("67%")
    assert table["hold"][:4] == ["2", "1", "0", "1"] and table["hold"][4].startswith("0%")
    assert "1 line(s) skipped" in out
    missing = run(tmp_path, "feedback-report", "nope.jsonl", ok=False)
    assert missing.returncode == 2 and "no decision log at nope.jsonl" in missing.stderr
