"""What the impact answers of ``bench serve`` ran: rollouts per request, arms screened.

Read from the answers of ``POST /v1/recommend`` themselves (each impact carries the
samples its arm ran), so the count is the server's, whatever runs its rollouts.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np


def rollouts_of(answer: dict[str, Any], samples: int) -> tuple[int, int, int]:
    """Rollouts a per-sector impact answer of ``/v1/recommend`` ran, its arms with an
    action, and how many of those the screen stopped early (fewer samples than the rest).

    Read from the answer itself: each changed sector's arm ran its impact's ``samples``;
    with two or more changes the joint arm ran ``total_impact``'s; the arm without the
    actions ran as many as the longest arm (:func:`policies.impact.estimate_impact`).
    ``samples`` is what the request asked for.
    """
    changed = [s for s in answer["sectors"] if s["kinds"] != ["no_change"]]
    total = answer["total_impact"]
    arms = [s["impact"]["samples"] for s in changed]
    if len(changed) >= 2 and total is not None:
        arms.append(total["samples"])
    every = arms + [s["impact"]["samples"] for s in answer["sectors"] if s["impact"] is not None]
    without = max(every) if every else 0
    return without + sum(arms), len(arms), sum(1 for n in arms if n < samples)


def screen_counts(url: str, bodies: list[bytes], samples: int) -> dict[str, float]:
    """Each body once: rollouts per request and the share of arms the screen stopped."""
    rollouts, arms, stopped = [], 0, 0
    with httpx.Client(timeout=60.0) as client:
        for body in bodies:
            r = client.post(
                f"{url}/v1/recommend", content=body, headers={"content-type": "application/json"}
            )
            if r.status_code != 200:
                raise RuntimeError(f"/v1/recommend answered {r.status_code}: {r.text[:300]}")
            n, a, k = rollouts_of(r.json(), samples)
            rollouts.append(n)
            arms += a
            stopped += k
    return {
        "requests": len(rollouts),
        "rollouts_per_request_mean": round(float(np.mean(rollouts)), 2),
        "rollouts_per_request_max": int(max(rollouts)),
        "arms_with_an_action": arms,
        "arms_stopped_by_the_screen": stopped,
    }
