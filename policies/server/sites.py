"""Live sites: each site's :class:`~twin.live_twin.LiveTwin`, rebuilt from the store.

The store is the source of truth. An event batch is stored first (insert-or-ignore by
``(site, event id)``, one transaction), and only then does any twin see it: every
twin, in every worker process, applies a site's events by reading the store in
``seq`` order from the last one it applied (:meth:`Site.catch_up`). So a restarted
server, a second worker and the worker that took the batch all hold the state of the
same sequence of events, and a resent batch changes nothing.

What a twin does with a stored event does not depend on how the stream was cut into
batches: it accepts an event only at or after its watermark, and applies events in
``(minute, order received)`` order below it, so replaying the stored sequence in any
batches gives the same state and refuses the same events.

An event is stored once it parses (:data:`~twin.floor_events.FLOOR_EVENT`); the twin may
still refuse it (an unknown sector, too late, contradicted by the state), and refuses it
again, the same way, on every replay. Its id stays taken: a corrected event needs a new id.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from policies.server.config import SiteSpec
from policies.store import Store, pages
from twin.adaptive import live_belief
from twin.eventlog import log_start
from twin.floor_events import FLOOR_EVENT
from twin.live_twin import LiveTwin
from twin.scenario import Scenario, load_scenario
from twin.snapshot import OperationSnapshot

#: Why an event was refused: ``schema`` (does not parse; never stored), ``scenario``
#: (names what the site's scenario lacks, or is before the site's start), ``late``
#: (older than the reorder tolerance allows), ``state`` (contradicted by the state
#: when applied).
RejectKind = Literal["schema", "scenario", "late", "state"]
REJECT_KINDS: tuple[RejectKind, ...] = ("schema", "scenario", "late", "state")


#: ``on_grid(site, minute, state)``: a site's state at a point of the decision grid
GridWatcher = Callable[["Site", float, OperationSnapshot], None]


class SiteError(ValueError):
    """A site that cannot be served (its scenario does not load or does not fit)."""


@dataclass(frozen=True)
class Refusal:
    """One refused event: its id (``None`` if it had none), why, and the kind of reason."""

    id: str | None
    reason: str
    kind: RejectKind


@dataclass
class BatchResult:
    """What one batch did: counts of its events, and the refusals reported with it.

    ``refused`` also holds events stored earlier (by this or another worker) that the
    twin refused when it applied them while taking this batch, as
    :meth:`LiveTwin.ingest` reports them.
    """

    accepted: int = 0
    duplicate: int = 0
    refused: list[Refusal] = field(default_factory=list)
    stored_seq: int = 0


def fits(site: Scenario, served: Scenario) -> str | None:
    """Why the site's scenario cannot be answered by a policy of ``served`` (``None``: it can).

    The policy's features and actions are per sector, item class and shift of its
    scenario; a site (typically a calibrated copy) must have the same ones, in order.
    """
    checks = (
        ("sectors", site.sector_names, served.sector_names),
        ("item classes", site.class_names, served.class_names),
        (
            "shifts",
            [s.name for s in site.workforce.shifts],
            [s.name for s in served.workforce.shifts],
        ),
    )
    for what, got, want in checks:
        if list(got) != list(want):
            return (
                f"its {what} ({', '.join(got)}) differ from those of the served policy's "
                f"scenario {served.name!r} ({', '.join(want)})"
            )
    return None


def event_parse_error(raw: Any) -> str | None:
    """Why ``raw`` is not a floor event (``None``: it is one), field by field."""
    try:
        FLOOR_EVENT.validate_python(raw)
    except ValidationError as err:
        parts = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"])
            parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        return "; ".join(parts)
    return None


class Site:
    """One live site: its scenario, its twin, and the last stored event the twin applied.

    Every read and change of the twin holds ``lock`` (request threads share it).
    """

    def __init__(self, spec: SiteSpec, scenario: Scenario, store: Store) -> None:
        self.name = spec.name
        self.scenario = scenario
        self.start = datetime.fromisoformat(spec.start) if spec.start else log_start(scenario)
        self.store = store
        self.twin = LiveTwin(scenario, self.start)
        self.last_seq = 0
        self.lock = threading.Lock()
        self._on_grid: GridWatcher | None = None
        self.next_grid = math.inf  # the next grid point to hand to ``_on_grid``

    def watch_grid(self, on_grid: GridWatcher) -> None:
        """Call ``on_grid(site, minute, state)`` at every later point of the decision grid
        the events pass, with the state at that minute (stored history is not revisited).

        The state at grid point ``g`` is final once the reorder watermark passes ``g`` (no
        event before ``g`` can be accepted any more). The watermark moves only when an
        event later than all before it arrives, so the state is taken just before that
        event is ingested: everything before ``g`` is applied or buffered, nothing after.
        """
        step = float(self.scenario.decision_interval_minutes)
        with self.lock:
            self._on_grid = on_grid
            self.next_grid = (math.floor(self.latest_minute() / step) + 1) * step

    def catch_up(self) -> list[Refusal]:
        """Apply the stored events after ``last_seq``, in order; the refusals on the way."""
        out: list[Refusal] = []
        with self.lock:
            for row in pages(
                lambda after, limit: self.store.events(self.name, after, limit), after=self.last_seq
            ):
                self._apply(json.loads(row.payload), out)
                self.last_seq = row.seq
        return out

    def _pass_grid(self, minute: float) -> None:
        """Hand ``_on_grid`` the state at each grid point an event at ``minute`` finalises.

        Called by the twin for an event that passed every check, just before it is
        taken in: a refused event moves nothing.
        """
        step = float(self.scenario.decision_interval_minutes)
        while self.next_grid < minute - self.twin.tolerance_minutes and self._on_grid is not None:
            try:
                state = self.twin.snapshot(self.next_grid)
            except ValueError:  # not after the last applied event: nothing to hand on
                state = None
            if state is not None:
                self._on_grid(self, self.next_grid, state)
            self.next_grid += step

    def _apply(self, raw: Any, out: list[Refusal]) -> None:
        """Ingest one event, naming the kind of each refusal from where it happened."""
        watch = self._pass_grid if self._on_grid is not None else None
        result = self.twin.ingest([raw], before_take=watch)
        for rid, reason in result.rejected:
            if result.accepted == 0 and rid == raw.get("id"):  # refused on the way in
                # the twin's rejections carry no kind; "too late" is its documented wording
                late = reason.startswith("too late")
                out.append(Refusal(rid, reason, "late" if late else "scenario"))
            else:  # taken in earlier, refused when applied now
                out.append(Refusal(rid, reason, "state"))

    def take(self, batch: Sequence[Any]) -> BatchResult:
        """Store a batch's well-formed events, then catch the twin up; what it did.

        Raises:
            StoreError: the batch was not stored (nothing of it counts; resend it).
        """
        result = BatchResult()
        rows: list[tuple[str, str, str]] = []
        for raw in batch:
            why = event_parse_error(raw)
            if why is not None:
                rid = raw.get("id") if isinstance(raw, dict) else None
                result.refused.append(Refusal(rid if isinstance(rid, str) else None, why, "schema"))
                continue
            rows.append((raw["id"], raw["timestamp"], json.dumps(raw, separators=(",", ":"))))
        new = self.store.add_events(self.name, rows) if rows else []
        fresh = {r[0] for r, is_new in zip(rows, new, strict=True) if is_new}
        result.duplicate = len(rows) - len(fresh)
        refused = self.catch_up()
        taken_in = len(fresh) - sum(
            1 for r in refused if r.kind in ("scenario", "late") and r.id in fresh
        )
        result.accepted = taken_in
        result.refused.extend(refused)
        result.stored_seq = self.last_seq
        return result

    def latest_minute(self) -> float:
        """The minute of the latest event taken in (the site's start before any)."""
        return self.twin.watermark + self.twin.tolerance_minutes

    def snapshot(self, at: str | None = None) -> OperationSnapshot:
        """The site's state at ``at`` (a timestamp; default: the latest event's time),
        after catching up with the store.

        Raises:
            ValueError: ``at`` is not a timestamp, or not after the last applied event.
        """
        self.catch_up()
        with self.lock:
            return self.twin.snapshot(self.latest_minute() if at is None else at)

    def demand_factors(self, at: str | None = None) -> dict[str, float]:
        """Per item class, the factor on the plan's arrival rates that the site's arrivals
        before ``at`` (default: the latest event's time) show (:mod:`twin.adaptive`).

        Raises:
            ValueError: ``at`` is not a timestamp.
        """
        self.catch_up()
        with self.lock:
            now = self.latest_minute() if at is None else self.twin.minute(at)
            return live_belief(self.twin, now).as_dict()


class Sites:
    """The server's live sites by name, each rebuilt from the store when built."""

    def __init__(self, specs: Sequence[SiteSpec], served: Scenario, store: Store) -> None:
        """Load each site's scenario, check it fits ``served``, and replay its stored events.

        Raises:
            SiteError: a scenario that does not load or does not fit the served policy.
            StoreError: the store cannot be read.
        """
        self.by_name: dict[str, Site] = {}
        for spec in specs:
            scenario = load_site_scenario(spec, served)
            site = Site(spec, scenario, store)
            site.catch_up()
            self.by_name[spec.name] = site

    def get(self, name: str) -> Site | None:
        return self.by_name.get(name)


def load_site_scenario(spec: SiteSpec, served: Scenario) -> Scenario:
    """The scenario of ``spec``, checked against the served policy's.

    Raises:
        SiteError: it does not load, or does not fit (:func:`fits`).
    """
    try:
        scenario = load_scenario(spec.scenario)
    except (OSError, ValueError) as err:
        raise SiteError(f"site {spec.name!r}: scenario {spec.scenario!r}: {err}") from None
    why = fits(scenario, served)
    if why is not None:
        raise SiteError(f"site {spec.name!r}: scenario {scenario.name!r} does not fit: {why}")
    return scenario


def as_served(snap: OperationSnapshot, served: Scenario) -> OperationSnapshot:
    """The site's snapshot named for the served policy's scenario, which answers it.

    A site's scenario (a calibrated copy) has the served scenario's sectors, classes
    and shifts (:func:`fits`); recommendations and forecasts run the served policy and
    its scenario's rollouts from the site's observed state.
    """
    if (snap.scenario, snap.scenario_digest) == (served.name, served.digest):
        return snap
    return snap.model_copy(update={"scenario": served.name, "scenario_digest": served.digest})
