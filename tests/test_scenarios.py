"""Built-in scenarios load, validate and run; broken scenarios fail naming the field.

Every built-in runs one simulated day under the ``static`` plan with the twin's
conservation laws checked every simulated hour. The validation tests break the
default scenario one field at a time and require a :class:`ScenarioError` whose
message names the field path and the problem, in one line per mistake; several
mistakes are reported together.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from agents.static import StaticController
from twin.model import OperationModel
from twin.runner import run, simulate
from twin.scenario import (
    EXIT,
    MINUTES_PER_DAY,
    Scenario,
    ScenarioError,
    builtin_names,
    load_scenario,
    scenario_from_dict,
)

SHIPPED = ("default", "peak-surge", "absenteeism", "breakdowns", "claims")
FULFILMENT_VARIANTS = ("peak-surge", "absenteeism", "breakdowns")
CHECK_EVERY_MINUTES = 60.0
INTERESTING_SEEDS = (0, 1, 2)
SLACK_UTILIZATION = 0.85  # a sector below this has hands to spare for the bottleneck


def _default_data() -> dict[str, Any]:
    """The default scenario as the raw mapping its YAML file holds."""
    text = (resources.files("twin") / "scenarios" / "default.yaml").read_text("utf-8")
    return yaml.safe_load(text)


# --------------------------------------------------------------------------- built-ins


def test_the_shipped_scenarios_are_built_in() -> None:
    assert set(SHIPPED) <= set(builtin_names())


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_loads_and_validates(name: str) -> None:
    sc = load_scenario(name)
    assert isinstance(sc, Scenario)
    assert sc.name == name, "a built-in's name must match its file name"
    assert sc.description.strip(), "built-ins are listed with their description"
    # the validated object survives a dump and re-validation unchanged
    assert scenario_from_dict(sc.model_dump(mode="json"), source=name) == sc


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_runs_a_day_under_static(name: str) -> None:
    sc = load_scenario(name)
    model = OperationModel(sc, rng=np.random.default_rng(0))
    checked: list[float] = []

    def check_hourly(m: OperationModel) -> None:
        if m.minute >= (len(checked) + 1) * CHECK_EVERY_MINUTES - 1e-9:
            m.check_invariants()
            checked.append(m.minute)

    run(model, StaticController(sc), minutes=MINUTES_PER_DAY, on_tick=check_hourly)

    assert model.minute == pytest.approx(MINUTES_PER_DAY)
    assert len(checked) == MINUTES_PER_DAY // CHECK_EVERY_MINUTES
    kpis = model.kpis()
    assert kpis.total.items_completed > 0
    assert set(kpis.sectors) == set(sc.sector_names)
    idle = [s for s, rec in kpis.sectors.items() if rec.items_completed == 0]
    assert not idle, f"sectors that processed nothing in a day: {idle}"
    assert 0.0 <= kpis.total.sla_attainment <= 1.0
    assert kpis.total.total_cost == pytest.approx(kpis.total.labor_cost + kpis.total.penalty_cost)


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_scaled_twice_loads(name: str) -> None:
    sc = load_scenario(name)
    big = sc.scaled(2.0)
    assert big.name == f"{name}-x2"
    assert big.total_headcount == 2 * sc.total_headcount
    for small_cls, big_cls in zip(sc.item_classes, big.item_classes, strict=True):
        assert big_cls.hourly_rates == pytest.approx([2 * r for r in small_cls.hourly_rates])
    assert scenario_from_dict(big.model_dump(mode="json"), source=big.name) == big
    model = OperationModel(big, rng=np.random.default_rng(0))
    run(model, StaticController(big), minutes=CHECK_EVERY_MINUTES)
    model.check_invariants()


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_static_day_is_worth_improving(name: str) -> None:
    """Under the plan as written some items miss their SLA, but the day does not collapse,
    and some sector with spare hours is trained to help the busiest one."""
    sc = load_scenario(name)
    miss_share, util = [], []
    for seed in INTERESTING_SEEDS:
        model = simulate(sc, StaticController(sc), seed=seed)
        kpis = model.kpis()
        miss_share.append(kpis.total.sla_misses / max(1, model.arrived))
        util.append([kpis.sectors[s].utilization for s in sc.sector_names])
    mean_miss = float(np.mean(miss_share))
    assert 0.005 < mean_miss < 0.20, f"mean share of items missing the SLA: {mean_miss:.1%}"

    mean_util = dict(zip(sc.sector_names, np.mean(util, axis=0), strict=True))
    bottleneck = max(mean_util, key=mean_util.__getitem__)
    helpers = [
        s
        for s, u in mean_util.items()
        if s != bottleneck and u < SLACK_UTILIZATION and sc.efficiency(s, bottleneck) > 0
    ]
    assert helpers, f"no sector with slack is trained for the bottleneck {bottleneck}: {mean_util}"


@pytest.mark.parametrize("name", FULFILMENT_VARIANTS)
def test_fulfilment_variants_keep_the_default_operation(name: str) -> None:
    """The variants change the day, not the operation: if the default's staff, demand or
    costs change, these files must change with it."""
    base, variant = load_scenario("default"), load_scenario(name)
    assert variant.domain == base.domain
    assert [(s.name, s.service, s.stations) for s in variant.sectors] == [
        (s.name, s.service, s.stations) for s in base.sectors
    ]
    assert variant.item_classes == base.item_classes
    assert variant.workforce == base.workforce
    assert variant.costs == base.costs
    assert variant.disruptions, "a variant of the default day must disrupt it"


def test_claims_is_a_station_free_back_office_with_early_exits() -> None:
    sc = load_scenario("claims")
    assert sc.domain == "claims_back_office"
    assert all(s.stations is None for s in sc.sectors)
    exits = [
        (c.name, src)
        for c in sc.item_classes
        for src, targets in c.routing.items()
        if targets.get(EXIT, 0) > 0
    ]
    assert exits, "some claims should close before payment"
    first_handler = {
        c.name: {t for t, p in c.routing.get("triage", {}).items() if p > 0 and t != EXIT}
        for c in sc.item_classes
    }
    assert len({frozenset(targets) for targets in first_handler.values()}) == len(first_handler)


# --------------------------------------------------------------------------- validation

Mutation = Callable[[dict[str, Any]], list[str]]


def _item_class(data: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    for i, c in enumerate(data["item_classes"]):
        if c["name"] == name:
            return i, c
    raise KeyError(name)


def _sector(data: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    for i, s in enumerate(data["sectors"]):
        if s["name"] == name:
            return i, s
    raise KeyError(name)


def _unknown_sector_in_route(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "express")
    c["route"] = ["picking", "packing", "shippping"]
    return [f"item_classes.{i}.routing.packing.shippping: unknown sector 'shippping'"]


def _unknown_entry_sector(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["entry"] = "pickng"
    return [f"item_classes.{i}.entry: unknown sector 'pickng'"]


def _routing_cycle(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["routing"]["packing"] = {"picking": 0.1, "shipping": 0.9}
    return [
        f"item_classes.{i}.routing.packing.picking: routing has a cycle",
        "picking -> packing -> picking",
    ]


def _23_hourly_rates(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["hourly_rates"] = c["hourly_rates"][:23]
    return [f"item_classes.{i}.hourly_rates", "24 hourly values", "got 23"]


def _negative_hourly_rate(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["hourly_rates"][3] = -1
    return [f"item_classes.{i}.hourly_rates", "rates must be >= 0"]


def _negative_headcount(d: dict[str, Any]) -> list[str]:
    d["workforce"]["headcount"]["picking"]["early"] = -3
    return ["workforce.headcount", "picking.early", "must be >= 0, got -3"]


def _unknown_shift(d: dict[str, Any]) -> list[str]:
    d["workforce"]["headcount"]["picking"]["night"] = 4
    return ["workforce.headcount.picking.night: unknown shift 'night'"]


def _unknown_sector_in_headcount(d: dict[str, Any]) -> list[str]:
    d["workforce"]["headcount"]["pickng"] = d["workforce"]["headcount"].pop("picking")
    return ["workforce.headcount.pickng: unknown sector 'pickng'"]


def _unknown_sector_in_cross_training(d: dict[str, Any]) -> list[str]:
    d["workforce"]["cross_training"]["picking"]["pakcing"] = 0.5
    return ["workforce.cross_training.picking.pakcing: unknown sector 'pakcing'"]


def _unknown_sector_in_plan(d: dict[str, Any]) -> list[str]:
    d["plan"]["shiping"] = d["plan"].pop("shipping")
    return ["plan.shiping: unknown sector 'shiping'"]


def _misnamed_sector(d: dict[str, Any]) -> list[str]:
    """Not also "unknown sector 'picking'" for every reference to it."""
    i, s = _sector(d, "picking")
    s["name"] = "Picking"
    return [f"sectors.{i}.name", "should match pattern"]


def _duplicate_sector_name(d: dict[str, Any]) -> list[str]:
    i, s = _sector(d, "shipping")
    s["name"] = "packing"
    return [f"sectors.{i}.name: sector name 'packing' is used twice"]


def _sector_named_exit(d: dict[str, Any]) -> list[str]:
    i, s = _sector(d, "shipping")
    s["name"] = EXIT
    return [f"sectors.{i}.name: 'exit' is reserved as a routing target"]


def _no_sectors(d: dict[str, Any]) -> list[str]:
    d["sectors"] = []
    return ["sectors: needs at least one sector"]


def _no_shifts(d: dict[str, Any]) -> list[str]:
    d["workforce"]["shifts"] = []
    return ["workforce.shifts: needs at least one shift"]


def _no_cutoffs(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["due"]["cutoffs"] = []
    return [f"item_classes.{i}.due.cutoffs: needs at least one cut-off time"]


def _hourly_rate_not_a_number(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["hourly_rates"][5] = "lots"
    return [f"item_classes.{i}.hourly_rates.5:", "valid number"]


def _hourly_rates_not_a_list(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["hourly_rates"] = 40
    return [f"item_classes.{i}.hourly_rates: should be a list"]


def _decision_interval_off_the_tick(d: dict[str, Any]) -> list[str]:
    d["tick_minutes"] = 7
    return ["decision_interval_minutes: must be a multiple of tick_minutes (7)"]


def _bad_service_parameter(d: dict[str, Any]) -> list[str]:
    i, s = _sector(d, "picking")
    s["service"]["cv"] = -1
    return [f"sectors.{i}.service.cv: Input should be greater than 0"]


def _misspelled_top_level_field(d: dict[str, Any]) -> list[str]:
    d["horizon_day"] = d.pop("horizon_days")
    return ["horizon_day:", "Extra inputs are not permitted"]


def _misspelled_nested_field(d: dict[str, Any]) -> list[str]:
    i, s = _sector(d, "receiving")
    s["servce"] = s.pop("service")
    return [
        f"sectors.{i}.servce: Extra inputs are not permitted",
        f"sectors.{i}.service: Field required",
    ]


def _extra_key_in_due(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["due"]["grace_minutes"] = 5
    return [f"item_classes.{i}.due.grace_minutes", "Extra inputs are not permitted"]


def _probabilities_above_one(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["routing"]["picking"] = {"packing": 0.85, "shipping": 0.25}
    return [f"item_classes.{i}.routing", "from 'picking'", "sum to <= 1", "got 1.1"]


def _hour_25(d: dict[str, Any]) -> list[str]:
    d["workforce"]["shifts"][0]["start"] = "25:00"
    return ["workforce.shifts.0.start", "within 00:00..24:00", "'25:00'"]


def _minute_75(d: dict[str, Any]) -> list[str]:
    d["workforce"]["shifts"][0]["breaks"][0]["start"] = "12:75"
    return ["workforce.shifts.0.breaks.0.start", "minutes must be < 60"]


def _due_with_both_rules(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "express")
    c["due"]["within_minutes"] = 90
    return [f"item_classes.{i}.due", "exactly one of 'within_minutes' or 'cutoffs'"]


def _due_with_no_rule(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "standard")
    c["due"] = {"lead_minutes": 30}
    return [f"item_classes.{i}.due", "exactly one of 'within_minutes' or 'cutoffs'"]


def _route_and_routing(d: dict[str, Any]) -> list[str]:
    i, c = _item_class(d, "inbound")
    c["routing"] = {"receiving": {"putaway": 1.0}}
    return [f"item_classes.{i}", "either 'route' or 'entry' + 'routing'"]


def _unknown_distribution(d: dict[str, Any]) -> list[str]:
    i, s = _sector(d, "putaway")
    s["service"] = {"dist": "gamma", "mean": 6.0}
    return [f"sectors.{i}.service", "'gamma'", "lognormal"]


def _efficiency_above_one(d: dict[str, Any]) -> list[str]:
    d["workforce"]["cross_training"]["picking"]["packing"] = 1.5
    return ["workforce.cross_training", "picking->packing", "within [0, 1]"]


def _disruption_in_unknown_sector(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [{"kind": "absenteeism", "sector": "pickng", "rate": 0.2}]
    return ["disruptions.0.sector: unknown sector 'pickng'"]


def _unknown_disruption_kind(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [{"kind": "flood", "sector": "picking"}]
    return ["disruptions.0", "'flood'", "demand_surge"]


def _disruption_without_kind(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [{"sector": "picking", "rate": 0.2}]
    return ["disruptions.0: needs a 'kind' field"]


def _disruption_rate_above_one(d: dict[str, Any]) -> list[str]:
    """The path is the file's, without pydantic's union tag (``disruptions.0.absenteeism``)."""
    d["disruptions"] = [{"kind": "absenteeism", "sector": "picking", "rate": 2}]
    return ["disruptions.0.rate: Input should be less than or equal to 1"]


def _surge_of_an_unknown_class(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [
        {
            "kind": "demand_surge",
            "start_minute": 0,
            "end_minute": 60,
            "multiplier": 2,
            "item_class": "expres",
        }
    ]
    return ["disruptions.0.item_class: unknown item class 'expres'"]


def _surge_ending_before_it_starts(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [
        {"kind": "demand_surge", "start_minute": 600, "end_minute": 500, "multiplier": 1.5}
    ]
    return ["disruptions.0: end_minute must be after start_minute"]


def _duplicate_shift_name(d: dict[str, Any]) -> list[str]:
    """Not also "unknown shift 'late'" for every headcount entry of the renamed shift."""
    d["workforce"]["shifts"][1]["name"] = d["workforce"]["shifts"][0]["name"]
    return ["workforce.shifts.1.name: shift name 'early' is used twice"]


def _breakdowns_without_stations(d: dict[str, Any]) -> list[str]:
    _, putaway = _sector(d, "putaway")
    putaway["breakdowns"] = {
        "time_to_failure": {"dist": "exponential", "mean": 100},
        "repair": {"dist": "deterministic", "value": 10},
    }
    return ["sectors.1", "'breakdowns' needs a number of 'stations'"]


def _outage_larger_than_the_sector(d: dict[str, Any]) -> list[str]:
    d["disruptions"] = [
        {
            "kind": "equipment_breakdown",
            "sector": "packing",
            "start_minute": 60,
            "duration_minutes": 30,
            "stations": 50,
        }
    ]
    return ["disruptions.0: 'packing' has 20 stations, cannot take 50 out"]


MUTATIONS: list[Mutation] = [
    _duplicate_shift_name,
    _breakdowns_without_stations,
    _outage_larger_than_the_sector,
    _unknown_sector_in_route,
    _unknown_entry_sector,
    _routing_cycle,
    _23_hourly_rates,
    _negative_hourly_rate,
    _negative_headcount,
    _unknown_shift,
    _unknown_sector_in_headcount,
    _unknown_sector_in_cross_training,
    _unknown_sector_in_plan,
    _misnamed_sector,
    _duplicate_sector_name,
    _sector_named_exit,
    _no_sectors,
    _no_shifts,
    _no_cutoffs,
    _hourly_rate_not_a_number,
    _hourly_rates_not_a_list,
    _decision_interval_off_the_tick,
    _bad_service_parameter,
    _misspelled_top_level_field,
    _misspelled_nested_field,
    _extra_key_in_due,
    _probabilities_above_one,
    _hour_25,
    _minute_75,
    _due_with_both_rules,
    _due_with_no_rule,
    _route_and_routing,
    _unknown_distribution,
    _efficiency_above_one,
    _disruption_in_unknown_sector,
    _unknown_disruption_kind,
    _disruption_without_kind,
    _disruption_rate_above_one,
    _surge_of_an_unknown_class,
    _surge_ending_before_it_starts,
]
# A misspelled key is two facts: the key is unknown and the one it meant is missing.
EXPECTED_LINES: dict[Mutation, int] = {_misspelled_nested_field: 2}
NOISE = ("(top level)", "Tuple should", "<unicode string>", "Value error")


def _problem_lines(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("  - ")]


def test_the_unbroken_default_validates() -> None:
    """The mutations below start from valid data: what fails is what they break."""
    assert scenario_from_dict(_default_data(), source="default.yaml") == load_scenario("default")


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda f: f.__name__.lstrip("_"))
def test_broken_scenario_names_the_field(mutate: Mutation) -> None:
    data = copy.deepcopy(_default_data())
    expected = mutate(data)
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data, source="broken.yaml")
    message = str(err.value)
    assert message.startswith("invalid scenario broken.yaml:\n")
    missing = [part for part in expected if part not in message]
    assert not missing, f"{missing} not in the message:\n{message}"
    assert len(_problem_lines(message)) == EXPECTED_LINES.get(mutate, 1), message
    assert len(message.splitlines()) == 1 + len(_problem_lines(message)), message
    assert not [n for n in NOISE if n in message], message


def _three_mistakes(d: dict[str, Any]) -> list[str]:
    """One field-level mistake and two cross-references, as lines of the message."""
    i, c = _item_class(d, "standard")
    c["hourly_rates"] = c["hourly_rates"][:23]
    c["routing"]["picking"] = {"pakcing": 0.85, "shipping": 0.15}
    d["workforce"]["headcount"]["picking"]["night"] = 4
    return [
        f"  - item_classes.{i}.hourly_rates: needs 24 hourly values "
        "(one per hour of the day), got 23",
        f"  - item_classes.{i}.routing.picking.pakcing: unknown sector 'pakcing' "
        "(sectors: receiving, putaway, picking, packing, shipping)",
        "  - workforce.headcount.picking.night: unknown shift 'night' (shifts: early, late)",
    ]


def test_a_file_with_several_mistakes_reports_them_all(tmp_path: Path) -> None:
    """A misspelled sector is not hidden until ``hourly_rates`` is fixed."""
    data = copy.deepcopy(_default_data())
    expected = _three_mistakes(data)
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).splitlines() == [f"invalid scenario {path}:", *expected]


def test_cross_references_are_all_reported_when_every_field_is_valid() -> None:
    """The validated path (the model's own validator) also reports every problem at once."""
    data = copy.deepcopy(_default_data())
    expected = [
        _unknown_entry_sector(data)[0],
        _unknown_shift(data)[0],
        _surge_ending_before_it_starts(data)[0],
    ]
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data, source="refs.yaml")
    lines = _problem_lines(str(err.value))
    assert len(lines) == len(expected), str(err.value)
    for line, part in zip(lines, expected, strict=True):
        assert line.startswith(f"  - {part}"), str(err.value)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ScenarioError, match="expected a mapping at the top level"):
        scenario_from_dict(["not", "a", "scenario"], source="list.yaml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loading


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario("nope")
    message = str(err.value)
    assert "unknown scenario 'nope'" in message
    for name in builtin_names():
        assert name in message


def test_yaml_syntax_error_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsectors: [receiving, putaway\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value)
    assert "not valid YAML" in str(err.value)
    assert str(err.value) == (
        f"invalid scenario {path}: not valid YAML at line 3, column 1: "
        "expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence from line 2, column 10)"
    )


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("name: site\nsectors:\n  - name: picking\n    service: a: b\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == (
        f"invalid scenario {path}: not valid YAML at line 4, column 15: "
        "mapping values are not allowed here"
    )


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(path)


def test_scenario_file_loads_like_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(_default_data()), encoding="utf-8")
    assert load_scenario(path) == load_scenario("default")
    assert load_scenario(str(path)) == load_scenario("default")


def test_invalid_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    data = _default_data()
    i, c = _item_class(data, "standard")
    c["hourly_rates"] = c["hourly_rates"][:23]
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value)
    assert f"item_classes.{i}.hourly_rates" in str(err.value)


def test_extends_merges_over_the_base(tmp_path: Path) -> None:
    path = tmp_path / "variant.yaml"
    path.write_text(
        "extends: default\nname: variant\nworkforce: {transfer_minutes: 3}\n", encoding="utf-8"
    )
    variant, base = load_scenario(path), load_scenario("default")
    assert variant.name == "variant"
    assert variant.workforce.transfer_minutes == 3
    assert variant.workforce.headcount == base.workforce.headcount  # merged, not replaced
    assert variant.sectors == base.sectors


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("extends: default\nname: a\nname: b\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="duplicate key 'name'") as err:
        load_scenario(path)
    assert str(err.value) == (
        f"invalid scenario {path}: not valid YAML at line 3, column 1: duplicate key 'name'"
    )


def test_a_folder_named_like_a_builtin_does_not_hide_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "claims").mkdir()
    assert load_scenario("claims").name == "claims"


def test_routing_cycle_names_the_item_class() -> None:
    data = copy.deepcopy(_default_data())
    _, cls = _item_class(data, "standard")
    cls["routing"]["shipping"] = {"picking": 1.0}
    with pytest.raises(ScenarioError, match="item classes standard"):
        scenario_from_dict(data, source="cycle.yaml")


def test_fractional_scaling_gives_a_valid_name() -> None:
    half = load_scenario("default").scaled(0.5)
    assert half.name == "default-x0_5"
    assert half.total_headcount < load_scenario("default").total_headcount


def test_a_station_in_an_outage_cannot_also_fail() -> None:
    data = copy.deepcopy(_default_data())
    _, packing = _sector(data, "packing")
    packing["stations"] = 2
    packing["breakdowns"] = {
        "time_to_failure": {"dist": "deterministic", "value": 30},
        "repair": {"dist": "deterministic", "value": 600},
    }
    data["disruptions"] = [
        {
            "kind": "equipment_breakdown",
            "sector": "packing",
            "start_minute": 0,
            "duration_minutes": 120,
            "stations": 2,
        }
    ]
    model = OperationModel(scenario_from_dict(data), rng=0)
    model.run_minutes(60)
    packing_state = model.snapshot().sector("packing")
    assert packing_state.outage_stations == 2
    assert packing_state.stations_down == 2
    model.run_minutes(120)  # outage over at 120; the failure clocks now take the stations
    assert model.snapshot().sector("packing").stations_down == 2
    assert model.snapshot().sector("packing").outage_stations == 0
