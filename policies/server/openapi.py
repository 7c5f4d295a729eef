"""Request examples for the OpenAPI document: real snapshots of the served scenario."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from policies.server.state import Served
from twin.snapshot import OperationSnapshot


def reference_examples(served: Served) -> dict[str, OperationSnapshot]:
    """Real snapshots of the served scenario (static plan, seed 0) for the OpenAPI examples."""
    out = {}
    for minute, snap in sorted(served.reference.examples.items()):
        out[f"{served.scenario.name} at {int(minute) // 60:02d}:{int(minute) % 60:02d}"] = snap
    return out


def _with_examples(app: FastAPI, examples: dict[str, dict[str, Any]]) -> None:
    """Put request examples into the OpenAPI document after FastAPI builds it.

    FastAPI drops ``null`` values from everything in the document, examples included,
    and a snapshot needs its nulls (a flex worker's ``home``): so they go in afterwards.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = build()  # FastAPI keeps it as app.openapi_schema
            for path, named in examples.items():
                body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
                body["examples"] = named
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it


def add_examples(app: FastAPI, served: Served) -> None:
    """Document ``POST /v1/recommend`` and ``POST /v1/forecast`` with examples of ``served``."""
    examples = reference_examples(served)
    first = next(iter(examples.values()))
    snapshot_examples = {
        name: {"summary": f"a live state of {name}", "value": snap.model_dump(mode="json")}
        for name, snap in examples.items()
    }
    recommend_examples = {
        **snapshot_examples,
        "with options": {
            "summary": "a snapshot with options: a shorter, cheaper impact estimate",
            "value": {
                "snapshot": first.model_dump(mode="json"),
                "impact": True,
                "horizon_minutes": 60,
                "samples": 4,
            },
        },
        "total impact only": {
            "summary": "the impact of all changes together only: two rollout arms, fastest",
            "value": {
                "snapshot": first.model_dump(mode="json"),
                "impact_scope": "total",
                "horizon_minutes": 60,
                "samples": 4,
            },
        },
        "no impact": {
            "summary": "decisions, messages and drivers only (about a millisecond)",
            "value": {"snapshot": first.model_dump(mode="json"), "impact": False},
        },
    }
    forecast_examples = {
        **snapshot_examples,
        "with options": {
            "summary": "risk 1, 2 and 4 hours ahead from 4 samples per arm",
            "value": {"snapshot": first.model_dump(mode="json"), "hours": [1, 2, 4], "samples": 4},
        },
    }

    _with_examples(app, {"/v1/recommend": recommend_examples, "/v1/forecast": forecast_examples})
