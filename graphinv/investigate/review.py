"""The review queue: investigators' decisions on rings, carried across sweeps by lineage.

A decision is a disposition (:data:`DISPOSITIONS`), an assignee and notes, each change
stored with who made it and when (an append-only log in the store: ``ring_decisions`` in
DuckDB, ``(:Decision)`` nodes in Neo4j). Decisions are keyed by the stable ring id, so a
ring that continues, grows or respawns under its id keeps its decision; a ring with a new
id whose lineage (``predecessors``, sweep after sweep) reaches a decided ring inherits the
nearest decision.

The queue of a sweep ranks what to look at (:func:`review_queue`):

0. **escalated** — a ring whose decision was *actioned* (enforced) before this sweep and
   which is here again, or a *confirmed* ring that respawned since the decision: the
   operator is back.
1. **alert** — an undecided (or *open*) ring scoring at or above the alert threshold, and
   a *dismissed* ring that grew past the re-alert margin since it was dismissed
   (``size > size_when_dismissed × (1 + margin)``).
2. **in review** — *in_progress*, or *confirmed* and awaiting action.
3. **silent** — *dismissed* within the margin, *actioned* in this very sweep, and rings
   below the threshold that nobody decided on; listed only with ``include_silent``.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from graphinv.stores import open_store
>>> from graphinv.synth import generate
>>> from graphinv.sweep import run_sweep
>>> with tempfile.TemporaryDirectory() as tmp:
...     store = open_store(path=Path(tmp) / "g.duckdb", use_env=False)
...     _ = store.load(generate(preset="small", seed=3, n_accounts=1_000), progress=False)
...     top = run_sweep(store, progress=False).rings["ring_id"].iloc[0]
...     _ = decide(store, top, status="dismissed", by="ana", note="a university lab")
...     queue = review_queue(store, include_silent=True).set_index("ring_id")
...     store.close()
>>> queue.loc[top, ["disposition", "priority"]].tolist()
['dismissed', 'silent']
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Any, cast

import pandas as pd

from graphinv.errors import InputError, RingNotFound
from graphinv.stores.base import Store

DISPOSITIONS = ("open", "in_progress", "confirmed", "dismissed", "actioned")
PRIORITIES = ("escalated", "alert", "in review", "silent")
DEFAULT_MARGIN = 0.5
"""A dismissed ring re-alerts once it is more than 50 % larger than when dismissed."""

QUEUE_COLUMNS = [
    "priority", "ring_id", "rank", "score", "size", "lineage", "disposition",
    "decided_on", "decided_size", "assignee", "reason", "last_note", "predecessors",
    "lineage_evidence", "campaign_id",
]


def decide(
    store: Store,
    ring_id: str,
    *,
    status: str | None = None,
    assignee: str | None = None,
    note: str | None = None,
    by: str | None = None,
    at: datetime | None = None,
    sweep_id: str | None = None,
) -> dict[str, Any]:
    """Record a decision on a ring of a sweep (the latest by default).

    Parameters
    ----------
    store
        The store holding the sweep; the decision is kept there.
    ring_id
        A ring of the sweep.
    status
        One of :data:`DISPOSITIONS`; None keeps the current one.
    assignee
        Who works on the ring; None keeps the current one, ``""`` unassigns.
    note
        Free text kept with who wrote it and when.
    by
        Who decides (default: the login name).
    at
        When (default: now, UTC).
    sweep_id
        The sweep the decision looks at; its ring size is stored so a dismissed ring can
        re-alert when it grows.

    Returns
    -------
    dict
        The event stored.

    Raises
    ------
    InputError
        Nothing to record, or an unknown status.
    RingNotFound
        The sweep has no such ring (or the store no sweep).
    """
    if status is None and assignee is None and not note:
        raise InputError("give a status, an assignee or a note to record")
    if status is not None and status not in DISPOSITIONS:
        raise InputError(f"status {status!r} is not one of {', '.join(DISPOSITIONS)}")
    rings = store.read_rings(sweep_id=sweep_id)
    if rings.empty:
        raise RingNotFound("no sweep in the store yet: run `graphinv sweep` first")
    found = rings.loc[rings["ring_id"] == ring_id]
    if found.empty:
        raise RingNotFound(f"ring {ring_id!r} is not in sweep {rings['sweep_id'].iloc[0]!r}")
    event = {
        "ring_id": ring_id,
        "at": pd.Timestamp(at or datetime.now(UTC)),
        "by": by or _login(),
        "status": status,
        "assignee": assignee,
        "note": note or None,
        "sweep_id": str(found["sweep_id"].iloc[0]),
        "size": int(found["size"].iloc[0]),
    }
    store.append_decision(event)
    return event


def current_decisions(store: Store) -> pd.DataFrame:
    """The state each decided ring id is in, from the log: one row per ring id.

    Columns: ``ring_id``, ``status`` (latest status given), ``status_sweep_id`` and
    ``status_size`` (sweep and ring size when it was given), ``status_at``, ``status_by``,
    ``assignee`` (latest given; ``""`` unassigned), ``last_note`` (``at by: text``) and
    ``notes`` (how many).
    """
    events = store.read_decisions()
    columns = ["ring_id", "status", "status_sweep_id", "status_size", "status_at", "status_by",
               "assignee", "last_note", "notes"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for ring_id, group in events.groupby("ring_id", sort=True):
        with_status = group[group["status"].notna()]
        last = with_status.iloc[-1] if len(with_status) else None
        assigned = group[group["assignee"].notna()]
        noted = group[group["note"].notna()]
        rows.append({
            "ring_id": ring_id,
            "status": None if last is None else last["status"],
            "status_sweep_id": None if last is None else last["sweep_id"],
            "status_size": None if last is None else last["size"],
            "status_at": None if last is None else last["at"],
            "status_by": None if last is None else last["by"],
            "assignee": assigned["assignee"].iloc[-1] if len(assigned) else None,
            "last_note": _note_text(noted.iloc[-1]) if len(noted) else None,
            "notes": len(noted),
        })
    return pd.DataFrame(rows, columns=columns)


def ring_notes(store: Store, ring_id: str) -> pd.DataFrame:
    """Every decision event on one ring id, oldest first (``at, by, status, assignee, note``)."""
    events = store.read_decisions()
    events = events.loc[events["ring_id"] == ring_id]
    return events[["at", "by", "status", "assignee", "note", "sweep_id"]].reset_index(drop=True)


def review_queue(
    store: Store,
    *,
    sweep_id: str | None = None,
    alert_threshold: float | None = None,
    margin: float = DEFAULT_MARGIN,
    include_silent: bool = False,
) -> pd.DataFrame:
    """The rings of a sweep (latest by default) in the order to review them.

    Parameters
    ----------
    store
        The store with sweeps and decisions.
    sweep_id
        The sweep to review.
    alert_threshold
        Score at which an undecided ring alerts; default the scoring threshold the sweep
        ran with (0.5 when it recorded none).
    margin
        A dismissed ring re-alerts when ``size > decided size × (1 + margin)``.
    include_silent
        Also list silent rings (dismissed within the margin, undecided below threshold).

    Returns
    -------
    DataFrame
        :data:`QUEUE_COLUMNS`, escalated first, then alerts, in review, silent; by score
        within each.
    """
    if margin < 0:
        raise InputError(f"margin must be ≥ 0, not {margin}")
    rings = store.read_rings(sweep_id=sweep_id)
    if rings.empty:
        return pd.DataFrame(columns=QUEUE_COLUMNS)
    this_sweep = str(rings["sweep_id"].iloc[0])
    threshold = (alert_threshold if alert_threshold is not None
                 else _threshold(store, this_sweep))
    decisions = current_decisions(store).set_index("ring_id")
    inherited = _inherit(store, rings, this_sweep, set(decisions.index))
    rows = []
    # Rows of itertuples: pandas-stubs types their fields as scalars, whatever the column.
    ring: Any
    for ring in rings.itertuples(index=False):
        source = inherited.get(ring.ring_id)
        # ring_id is unique in current_decisions, so .loc gives one row, never a frame.
        state = cast(pd.Series, decisions.loc[source]) if source is not None else None
        rows.append(_queue_row(ring, source, state, this_sweep, threshold, margin))
    queue = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
    queue["_order"] = queue["priority"].map(PRIORITIES.index)
    queue = queue.sort_values(["_order", "score"], ascending=[True, False], kind="stable")
    queue = queue.drop(columns="_order").reset_index(drop=True)
    if not include_silent:
        queue = queue.loc[queue["priority"] != "silent"].reset_index(drop=True)
    return queue


def decision_labels(store: Store, *, sweep_id: str | None = None) -> pd.DataFrame:
    """Account labels from decisions, for ``fit-weights``: ``account_id, kind``.

    Members of rings whose (own or inherited) disposition is *confirmed* or *actioned*
    are ``extraction``; of *dismissed* rings ``benign``. Undecided rings give no labels.
    """
    queue = review_queue(store, sweep_id=sweep_id, include_silent=True)
    kinds = {"confirmed": "extraction", "actioned": "extraction", "dismissed": "benign"}
    decided = queue.loc[queue["disposition"].isin(list(kinds)), ["ring_id", "disposition"]]
    members = store.read_members(sweep_id=sweep_id)
    labelled = members.merge(decided, on="ring_id")
    return pd.DataFrame({
        "account_id": labelled["account_id"],
        "kind": labelled["disposition"].map(kinds),
        "ring_id": labelled["ring_id"],
    }).drop_duplicates("account_id").reset_index(drop=True)


def alert_groups(store: Store, alerts: pd.DataFrame) -> list[dict[str, Any]]:
    """Alerting rings grouped by the ring of the sweep before that they descend from.

    A banned operator coming back shows as one line ("R-f6a0 (168 accounts, actioned) is
    back as 15 rings / 99 accounts") rather than a list of bare ids; rings with no
    predecessor form one group each.

    Parameters
    ----------
    store
        The store the sweep was written to (for the previous rings and decisions).
    alerts
        Alerting rings of the latest sweep: ``ring_id, size, score, status,
        predecessors, lineage_evidence``.

    Returns
    -------
    list of dict
        ``predecessor`` (None for new rings), ``predecessor_size``, ``disposition``,
        ``rings``, ``accounts``, ``ring_ids``, ``evidence`` and ``text``; the largest
        comeback first.
    """
    if alerts.empty:
        return []
    sweeps = store.read_sweeps()["sweep_id"].tolist()
    before = (store.read_rings(sweep_id=sweeps[-2]).set_index("ring_id")
              if len(sweeps) >= 2 else pd.DataFrame(columns=["size", "sweep_id"]))
    decided = current_decisions(store).set_index("ring_id")["status"]
    # Keyed by the main predecessor; a ring without one is its own group.
    groups: dict[tuple[bool, str], list[Any]] = {}
    # Rows of itertuples: pandas-stubs types their fields as scalars; predecessors is a list.
    ring: Any
    for ring in alerts.itertuples(index=False):
        predecessors = list(ring.predecessors) if ring.predecessors is not None else []
        group = (True, predecessors[0]) if predecessors else (False, ring.ring_id)
        groups.setdefault(group, []).append(ring)
    out = []
    for (descends, key), rings in groups.items():
        accounts = int(sum(r.size for r in rings))
        ids = [r.ring_id for r in sorted(rings, key=lambda r: -r.size)]
        evidence = next((r.lineage_evidence for r in rings if r.ring_id == key), None) or next(
            (r.lineage_evidence for r in rings if r.lineage_evidence), None)
        if not descends:
            ring = rings[0]
            out.append({
                "predecessor": None, "predecessor_size": None, "disposition": None,
                "rings": 1, "accounts": accounts, "ring_ids": ids, "evidence": None,
                "text": f"{ring.ring_id}: new ring of {ring.size} accounts, score "
                        f"{ring.score:.2f}",
            })
            continue
        size = int(before["size"][key]) if key in before.index else None
        status = decided.get(key)
        said = ", ".join(x for x in (f"{size} accounts" if size else None, status) if x)
        verb = "is back as" if any(r.status == "respawned" for r in rings) else "grew into"
        text = (f"{key} ({said}) {verb} {len(rings)} ring{'s' if len(rings) > 1 else ''} / "
                f"{accounts} accounts" + (f": {evidence}" if evidence else ""))
        out.append({
            "predecessor": key, "predecessor_size": size, "disposition": status,
            "rings": len(rings), "accounts": accounts, "ring_ids": ids, "evidence": evidence,
            "text": text,
        })
    return sorted(out, key=lambda g: (g["predecessor"] is None, -g["accounts"]))


# -- internals ----------------------------------------------------------------------------


def _queue_row(
    ring: Any,
    source: str | None,
    state: pd.Series | None,
    this_sweep: str,
    threshold: float,
    margin: float,
) -> dict[str, Any]:
    status = None if state is None else state["status"]
    lineage = ring.status or "new"
    decided_before = state is not None and state["status_sweep_id"] != this_sweep
    decided_size = None if state is None else _int(state["status_size"])
    score = float(ring.score) if pd.notna(ring.score) else float("nan")
    inherited = source is not None and source != ring.ring_id
    via = f" (inherited from {source})" if inherited else ""
    if status == "actioned" and decided_before and state is not None:
        priority = "escalated"
        reason = (f"{source} was actioned in {state['status_sweep_id']} ({decided_size} "
                  f"accounts); back as {lineage} ring of {ring.size}")
    elif status == "confirmed" and lineage == "respawned" and decided_before:
        priority = "escalated"
        reason = f"respawn of confirmed ring {source} ({decided_size} accounts)"
    elif status == "dismissed":
        limit = (decided_size or 0) * (1 + margin)
        if ring.size > limit:
            priority = "alert"
            reason = (f"dismissed at {decided_size} accounts{via}; now {ring.size} "
                      f"(> {limit:.0f}, margin {margin:.0%})")
        else:
            priority = "silent"
            reason = (f"dismissed at {decided_size} accounts{via}; {ring.size} now, within "
                      f"the {margin:.0%} margin")
    elif status == "actioned":
        priority, reason = "silent", "actioned in this sweep"
    elif status == "confirmed":
        priority, reason = "in review", f"confirmed{via}; awaiting action"
    elif status == "in_progress":
        priority, reason = "in review", f"in progress{via}"
    elif score >= threshold:
        priority = "alert"
        reason = f"{lineage} ring, score {score:.2f} ≥ {threshold:.2f}" + (
            f", open{via}" if status == "open" else "")
    else:
        priority = "silent"
        reason = f"score {score:.2f} below {threshold:.2f}"
    return {
        "priority": priority,
        "ring_id": ring.ring_id,
        "rank": ring.rank,
        "score": score,
        "size": ring.size,
        "lineage": lineage,
        "disposition": status or "open",
        "decided_on": source,
        "decided_size": decided_size,
        "assignee": None if state is None else (state["assignee"] or None),
        "reason": reason,
        "last_note": None if state is None else state["last_note"],
        "predecessors": list(ring.predecessors),
        "lineage_evidence": ring.lineage_evidence,
        "campaign_id": ring.campaign_id,
    }


def _inherit(
    store: Store, rings: pd.DataFrame, this_sweep: str, decided: set[str]
) -> dict[str, str]:
    """For each ring id of the sweep, the nearest decided ring id along its lineage.

    A ring's own id comes first; otherwise its predecessors in the sweep before, theirs in
    the sweep before that, and so on (the first decided one on the way, largest first).
    """
    found: dict[str, str] = {r: r for r in rings["ring_id"] if r in decided}
    pending = {r: list(p) for r, p in zip(rings["ring_id"], rings["predecessors"], strict=True)
               if r not in found and len(p)}
    if not pending or not decided:
        return found
    sweeps = store.read_sweeps()["sweep_id"].tolist()
    position = sweeps.index(this_sweep) if this_sweep in sweeps else len(sweeps)
    for earlier in reversed(sweeps[:position]):
        if not pending:
            break
        for ring_id, ancestors in list(pending.items()):
            hit = next((a for a in ancestors if a in decided), None)
            if hit is not None:
                found[ring_id] = hit
                del pending[ring_id]
        if not pending:
            break
        before = store.read_rings(sweep_id=earlier).set_index("ring_id")["predecessors"]
        pending = {
            ring_id: [p for a in ancestors if a in before.index for p in before[a]]
            for ring_id, ancestors in pending.items()
        }
        pending = {r: a for r, a in pending.items() if a}
    return found


def _threshold(store: Store, sweep_id: str) -> float:
    """The scoring threshold the sweep ran with (recorded in its parameters)."""
    sweeps = store.read_sweeps().set_index("sweep_id")
    params: dict[str, Any] = sweeps["params"][sweep_id] if sweep_id in sweeps.index else {}
    threshold = params.get("settings", {}).get("scoring", {}).get("threshold")
    return float(threshold) if threshold is not None else 0.5


def _note_text(event: pd.Series) -> str:
    at = pd.Timestamp(event["at"])
    return f"{at:%Y-%m-%d %H:%M} {event['by']}: {event['note']}"


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
