"""Metrics of found rings against ground-truth labels (docs/evaluation.md).

Ring recovery
    Per true ring, the best-match F1 with any found ring (``2·|T ∩ F| / (|T| + |F|)``),
    averaged per label kind, and the share of true rings at F1 ≥ 0.5. The adjusted Rand
    index compares the two partitions of all labelled accounts, with accounts outside
    any ring as singletons on both sides.
Ranking
    With ring ``scores``: precision of the ``top_k`` rings (:class:`EvaluationOptions`),
    where a found ring counts as extraction when most of its members are labelled
    ``extraction``.
Accounts
    An account is *flagged* when it sits in a found ring scored at or above the scoring
    threshold of the settings in force (``settings.scoring.threshold``, the one that set
    ``flagged`` on the rings), or, without scores, in any found ring. Precision and
    recall of extraction accounts follow, and the flagged counts per label kind and per
    trait (cgnat, vpn, office_nat, university_nat, camouflage, …) show
    where a weakness is. ``in_extraction_rings`` counts accounts inside found rings that
    are mostly extraction: for benign kinds it is the damage a merge would do.
    ``benign_flagged_per_10k`` puts the benign count on the platform's scale.
Live accounts
    Detection runs on live accounts: banned and suspended ones (label trait ``banned`` or
    ``suspended``, or a ``status`` column other than ``active``) cannot be found. The
    ``*_active`` figures repeat F1, precision and recall with them left out of both the
    true and the found rings, next to the all-label figures.
Rings before scoring
    ``ring_purity``: of all accounts in found rings, the share labelled an abuse kind.
    ``flagged_rings`` against ``extraction_rings``: how many alerts per true ring.
Traps
    ``by_trap``, one row per label trait: true abuse rings most of whose members carry
    it (their mean and worst best-match F1, and the share of their accounts flagged), and
    the trait's benign accounts flagged or inside a found ring.

Examples
--------
>>> import pandas as pd
>>> labels = pd.DataFrame({
...     "account_id": list("abcdefg"),
...     "ring_id": ["r1"] * 4 + ["h1"] * 2 + [None],
...     "kind": ["extraction"] * 4 + ["household"] * 2 + ["benign"],
... })
>>> members = pd.DataFrame({"ring_id": ["x"] * 4, "account_id": list("abcd")})
>>> ev = evaluate(members, labels)
>>> ev.extraction_mean_f1, ev.extraction_recall, ev.benign_flagged, ev.ring_purity
(1.0, 1.0, 0, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Annotated

import numpy as np
import pandas as pd
import pydantic

from graphinv.config import Settings
from graphinv.errors import stage_options
from graphinv.output import terminal_text

__all__ = ["ABUSE_KINDS", "INACTIVE_TRAITS", "Evaluation", "EvaluationOptions", "evaluate"]

#: Label kinds that are coordinated abuse; every other kind is benign.
ABUSE_KINDS = ("extraction", "card_testing", "free_tier_farming")
_TRAITS = ("cgnat", "vpn", "office_nat", "university_nat", "camouflage")
#: Label traits of accounts that are not live (detection never sees them).
INACTIVE_TRAITS = ("banned", "suspended")


@stage_options("evaluation")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class EvaluationOptions:
    """Settings of :func:`evaluate`.

    Parameters
    ----------
    top_k : int ≥ 1
        Highest-scored rings counted in ``precision_at_k``. Default ``20``.

    Examples
    --------
    >>> EvaluationOptions(top_k=0)
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: evaluation.top_k = 0: must be ≥ 1
    """

    top_k: Annotated[int, pydantic.Field(ge=1)] = 20


@dataclass(frozen=True)
class Evaluation:
    """Detection quality against labels.

    Attributes
    ----------
    accounts : int
        Labelled accounts.
    rings_found : int
    extraction_rings : int
        True extraction rings.
    extraction_mean_f1 : float
        Mean best-match F1 of true extraction rings (NaN without any).
    extraction_share_f1_050 : float
        Share of true extraction rings with best-match F1 ≥ 0.5.
    ari : float
        Adjusted Rand index over all labelled accounts.
    precision_at_k : float or None
        Share of the ``top_k`` highest-scored rings that are mostly extraction; None
        without scores.
    top_k : int
    threshold : float or None
        Score threshold used for flagging (the scoring threshold); None when flagging is
        ring membership.
    extraction_precision, extraction_recall : float
        Of flagged accounts, the share labelled extraction; of extraction accounts,
        the share flagged.
    benign_flagged : int
        Flagged accounts of benign kinds.
    benign_in_extraction_rings : int
        Accounts of benign kinds inside found rings that are mostly extraction.
    benign_accounts : int
        Labelled accounts of benign kinds.
    benign_flagged_per_10k : float
        ``benign_flagged`` per 10,000 benign accounts.
    ring_purity : float
        Before scoring: share of the accounts in found rings that are labelled an abuse
        kind (NaN when nothing was found).
    flagged_rings : int
        Found rings scored at or above ``threshold`` (every found ring without scores).
    flagged_per_true_ring : float
        ``flagged_rings / extraction_rings``.
    inactive_accounts : int
        Labelled accounts that are banned or suspended.
    extraction_mean_f1_active, extraction_precision_active, extraction_recall_active : float
        The same figures with inactive accounts left out of true and found rings.
    per_ring : pandas.DataFrame
        ``ring_id, kind, size, best_ring, overlap, precision, recall, f1`` per true ring.
    by_kind : pandas.DataFrame
        ``kind, accounts, flagged, flagged_share, in_extraction_rings, rings, mean_f1,
        share_f1_050``.
    by_trait : pandas.DataFrame
        ``trait, accounts, extraction, extraction_flagged, other, other_flagged,
        other_in_extraction_rings``.
    by_trap : pandas.DataFrame
        ``trait, abuse_rings, mean_f1, min_f1, abuse_accounts, abuse_flagged_share,
        benign_accounts, benign_flagged, benign_in_rings``: per label trait, the true abuse
        rings most of whose members carry it, and its benign accounts flagged or in any
        found ring.
    """

    accounts: int
    rings_found: int
    extraction_rings: int
    extraction_mean_f1: float
    extraction_share_f1_050: float
    ari: float
    precision_at_k: float | None
    top_k: int
    threshold: float | None
    extraction_precision: float
    extraction_recall: float
    benign_flagged: int
    benign_in_extraction_rings: int
    per_ring: pd.DataFrame
    by_kind: pd.DataFrame
    by_trait: pd.DataFrame
    benign_accounts: int = 0
    benign_flagged_per_10k: float = math.nan
    ring_purity: float = math.nan
    flagged_rings: int = 0
    flagged_per_true_ring: float = math.nan
    inactive_accounts: int = 0
    extraction_mean_f1_active: float = math.nan
    extraction_precision_active: float = math.nan
    extraction_recall_active: float = math.nan
    by_trap: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict:
        """JSON-able dict: the scalars, ``by_kind``, ``by_trait``, and ``per_ring`` rows
        of abuse kinds only (benign structures can number in the tens of thousands)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "per_ring":
                value = value[value["kind"].isin(ABUSE_KINDS)]
            if isinstance(value, pd.DataFrame):
                value = [{k: _clean(v) for k, v in row.items()} for row in value.to_dict("records")]
            out[f.name] = _clean(value)
        return out

    def table(self):
        """Rich renderable: headline metrics, then the per-kind and per-trait breakdowns.

        Print it with ``rich.console.Console().print(ev.table())``.
        """
        from rich.console import Group
        from rich.table import Table

        head = Table(title="Detection quality", show_header=False)
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, pd.DataFrame):
                head.add_row(f.name, terminal_text(_fmt(value)))
        side = Table(title="Extraction rings: all labels vs live accounts only")
        for column in ("", "all labels", f"live ({self.inactive_accounts:,} left out)"):
            side.add_column(column, justify="right" if column else "left")
        for name in ("extraction_mean_f1", "extraction_precision", "extraction_recall"):
            side.add_row(name, _fmt(getattr(self, name)), _fmt(getattr(self, f"{name}_active")))
        parts = [head, side]
        for title, frame in (
            ("By label kind", self.by_kind),
            ("By trait", self.by_trait),
            ("By trap (true abuse rings per trait; benign accounts per trait)", self.by_trap),
        ):
            table = Table(title=title)
            for column in frame.columns:
                text = frame[column].dtype == object
                table.add_column(terminal_text(column), justify="left" if text else "right")
            for row in frame.itertuples(index=False):
                # Label kinds and traits come from an input file: print them as plain text.
                table.add_row(*(terminal_text(_fmt(v)) for v in row))
            parts.append(table)
        return Group(*parts)


def evaluate(
    members: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    scores: pd.DataFrame | None = None,
    settings: Settings | None = None,
    options: EvaluationOptions | None = None,
) -> Evaluation:
    """Compare found rings with labels.

    Parameters
    ----------
    members : pandas.DataFrame
        ``ring_id, account_id`` of found rings (``Detection.members``).
    labels : pandas.DataFrame
        ``account_id, ring_id, kind`` and optionally ``traits`` (semicolon-separated).
        Accounts with an empty or missing ``ring_id`` belong to no true ring.
    scores : pandas.DataFrame, optional
        ``ring_id, score`` of found rings.
    settings : Settings, optional
        The settings the rings were scored with (default: the documented defaults): rings
        scored at or above ``settings.scoring.threshold`` are flagged.
    options : EvaluationOptions, optional
        How many top rings ``precision_at_k`` counts (default: the class's defaults).

    Returns
    -------
    Evaluation
    """
    threshold = (settings or Settings()).scoring.threshold if scores is not None else None
    top_k = (options or EvaluationOptions()).top_k
    truth = labels.drop_duplicates("account_id").set_index("account_id")
    no_ring = truth["ring_id"].isna() | (truth["ring_id"].astype(str) == "")
    truth = truth.assign(ring_id=truth["ring_id"].astype(object).mask(no_ring, None))
    kind = truth["kind"].astype(str)
    found = members.drop_duplicates("account_id").set_index("account_id")["ring_id"]
    found_kind = kind.reindex(found.index).fillna("unlabelled")
    majority = _majority_kind(found, found_kind)
    if scores is not None:
        ranked = scores.sort_values(["score", "ring_id"], ascending=[False, True])
        flagged_rings = set(ranked.loc[ranked["score"] >= threshold, "ring_id"])
        top = ranked["ring_id"].head(top_k)
        precision_at_k = _mean(majority.reindex(top) == "extraction")
    else:
        flagged_rings = set(found.unique())
        precision_at_k = None
    flagged = found.index[found.isin(flagged_rings).to_numpy()]
    extraction_ring_ids = majority.index[majority.to_numpy() == "extraction"]
    in_extraction = found.index[found.isin(extraction_ring_ids).to_numpy()]

    per_ring = _best_match(truth, found)
    is_flagged = kind.index.isin(flagged)
    is_in_extraction = kind.index.isin(in_extraction)
    benign = ~kind.isin(ABUSE_KINDS).to_numpy()
    is_extraction = (kind == "extraction").to_numpy()
    n_flagged = int(found.isin(flagged_rings).sum())
    ext_rings = per_ring[per_ring["kind"] == "extraction"]
    live = ~_inactive(truth)
    live_found = found[found.index.isin(truth.index[live])]
    live_rings = _best_match(truth[live], live_found)
    live_rings = live_rings[live_rings["kind"] == "extraction"]
    live_flagged = is_flagged & live
    live_extraction = is_extraction & live
    n_benign = int(benign.sum())
    n_flagged_rings = int(found[found.isin(flagged_rings)].nunique())
    return Evaluation(
        accounts=len(truth),
        rings_found=int(found.nunique()),
        extraction_rings=len(ext_rings),
        extraction_mean_f1=_mean(ext_rings["f1"]),
        extraction_share_f1_050=_mean(ext_rings["f1"] >= 0.5),
        ari=_ari(truth["ring_id"], found),
        precision_at_k=precision_at_k,
        top_k=top_k,
        threshold=threshold,
        extraction_precision=_ratio(int((is_flagged & is_extraction).sum()), n_flagged),
        extraction_recall=_ratio(int((is_flagged & is_extraction).sum()), int(is_extraction.sum())),
        benign_flagged=int((is_flagged & benign).sum()),
        benign_in_extraction_rings=int((is_in_extraction & benign).sum()),
        per_ring=per_ring,
        by_kind=_by_kind(kind, is_flagged, is_in_extraction, per_ring),
        by_trait=_by_trait(truth, is_flagged, is_in_extraction, is_extraction),
        benign_accounts=n_benign,
        benign_flagged_per_10k=_ratio(10_000 * int((is_flagged & benign).sum()), n_benign),
        ring_purity=_mean(found_kind.isin(ABUSE_KINDS)),
        flagged_rings=n_flagged_rings,
        flagged_per_true_ring=_ratio(n_flagged_rings, len(ext_rings)),
        inactive_accounts=int((~live).sum()),
        extraction_mean_f1_active=_mean(live_rings["f1"]),
        extraction_precision_active=_ratio(
            int((live_flagged & is_extraction).sum()), int(live_flagged.sum())
        ),
        extraction_recall_active=_ratio(
            int((live_flagged & is_extraction).sum()), int(live_extraction.sum())
        ),
        by_trap=_by_trap(truth, per_ring, is_flagged, kind.index.isin(found.index)),
    )


def _majority_kind(found: pd.Series, found_kind: pd.Series) -> pd.Series:
    """Label kind of more than half of each found ring's members, else ``"mixed"``."""
    counts = (
        pd.DataFrame({"ring_id": found.to_numpy(), "kind": found_kind.to_numpy()})
        .value_counts()
        .reset_index(name="n")
        .sort_values(["ring_id", "n", "kind"], ascending=[True, False, True])
    )
    top = counts.drop_duplicates("ring_id").set_index("ring_id")
    total = counts.groupby("ring_id")["n"].sum()
    return top["kind"].where(2 * top["n"] > total.reindex(top.index), "mixed")


def _best_match(truth: pd.DataFrame, found: pd.Series) -> pd.DataFrame:
    true_ring = truth["ring_id"].dropna().astype(str)
    size = true_ring.value_counts()
    ring_kind = truth.loc[true_ring.index, "kind"].groupby(true_ring).agg(lambda k: k.mode()[0])
    found_size = found.value_counts()
    both = pd.DataFrame({"true": true_ring, "found": found.reindex(true_ring.index)}).dropna()
    overlap = both.groupby(["true", "found"]).size().rename("overlap").reset_index()
    true_n = size.reindex(overlap["true"]).to_numpy()
    found_n = found_size.reindex(overlap["found"]).to_numpy()
    overlap["f1"] = 2 * overlap["overlap"] / (true_n + found_n)
    best = overlap.sort_values(["f1", "found"], ascending=[False, True]).drop_duplicates("true")
    best = best.set_index("true").reindex(size.index)
    out = pd.DataFrame(
        {
            "ring_id": size.index,
            "kind": ring_kind.reindex(size.index).to_numpy(),
            "size": size.to_numpy(),
            "best_ring": best["found"].to_numpy(),
            "overlap": best["overlap"].fillna(0).astype(int).to_numpy(),
        }
    )
    found_n = found_size.reindex(out["best_ring"]).to_numpy()
    out["precision"] = np.where(out["overlap"] > 0, out["overlap"] / found_n, 0.0)
    out["recall"] = out["overlap"] / out["size"]
    out["f1"] = best["f1"].fillna(0.0).to_numpy()
    return out.sort_values(["kind", "ring_id"], ignore_index=True)


def _ari(true_ring: pd.Series, found: pd.Series) -> float:
    """Adjusted Rand index; accounts in no ring are singletons on either side."""
    n = len(true_ring)
    if n < 2:
        return math.nan
    t = true_ring.astype(object).where(true_ring.notna(), None)
    f = found.reindex(true_ring.index)
    both = pd.DataFrame({"t": t, "f": f}).dropna()

    def pairs(counts) -> float:
        counts = np.asarray(counts, dtype=np.float64)
        return float(np.sum(counts * (counts - 1) / 2))

    index = pairs(both.groupby(["t", "f"]).size())
    a, b = pairs(t.dropna().value_counts()), pairs(f.dropna().value_counts())
    expected = a * b / (n * (n - 1) / 2)
    top = (a + b) / 2 - expected
    return float((index - expected) / top) if top > 0 else 1.0


def _by_kind(kind, is_flagged, is_in_extraction, per_ring) -> pd.DataFrame:
    frame = pd.DataFrame({"kind": kind.to_numpy(), "flag": is_flagged, "ext": is_in_extraction})
    out = frame.groupby("kind").agg(
        accounts=("kind", "size"), flagged=("flag", "sum"), in_extraction_rings=("ext", "sum")
    )
    out.insert(2, "flagged_share", out["flagged"] / out["accounts"])
    rings = per_ring.groupby("kind").agg(
        rings=("f1", "size"), mean_f1=("f1", "mean"), share_f1_050=("f1", _share_050)
    )
    out = out.join(rings, how="left")
    out["rings"] = out["rings"].fillna(0).astype(int)
    return out.reset_index()


def _by_trait(truth, is_flagged, is_in_extraction, is_extraction) -> pd.DataFrame:
    if "traits" in truth:
        traits = truth["traits"].fillna("").astype(str).str.split(";")
        seen = sorted({t for ts in traits for t in ts if t} | set(_TRAITS))
    else:
        traits = pd.Series([[]] * len(truth), index=truth.index)
        seen = list(_TRAITS)
    exploded = traits.explode()
    rows = []
    for trait in seen:
        has = truth.index.isin(exploded.index[(exploded == trait).to_numpy()])
        ext, other = has & is_extraction, has & ~is_extraction
        rows.append(
            {
                "trait": trait,
                "accounts": int(has.sum()),
                "extraction": int(ext.sum()),
                "extraction_flagged": int((ext & is_flagged).sum()),
                "other": int(other.sum()),
                "other_flagged": int((other & is_flagged).sum()),
                "other_in_extraction_rings": int((other & is_in_extraction).sum()),
            }
        )
    return pd.DataFrame(rows)


def _inactive(truth: pd.DataFrame) -> np.ndarray:
    """Banned or suspended accounts: by a ``status`` column, else by label traits."""
    out = np.zeros(len(truth), dtype=bool)
    if "status" in truth:
        out |= (truth["status"].fillna("active").astype(str) != "active").to_numpy()
    if "traits" in truth:
        names = truth["traits"].fillna("").astype(str).str.split(";")
        out |= names.map(lambda ts: any(t in INACTIVE_TRAITS for t in ts)).to_numpy(dtype=bool)
    return out


def _trait_lists(truth: pd.DataFrame) -> pd.Series:
    if "traits" not in truth:
        return pd.Series([[]] * len(truth), index=truth.index, dtype=object)
    return truth["traits"].fillna("").astype(str).str.split(";")


def _by_trap(
    truth: pd.DataFrame, per_ring: pd.DataFrame, is_flagged: np.ndarray, in_found: np.ndarray
) -> pd.DataFrame:
    exploded = _trait_lists(truth).explode()
    exploded = exploded[exploded.fillna("") != ""]
    abuse = truth["kind"].astype(str).isin(ABUSE_KINDS).to_numpy()
    ring_of = truth["ring_id"]
    f1 = per_ring.set_index("ring_id")["f1"]
    ring_size = per_ring.set_index("ring_id")["size"]
    rows = []
    for trait in sorted(set(exploded)):
        has = truth.index.isin(exploded.index[(exploded == trait).to_numpy()])
        carriers = ring_of[has & abuse].dropna().value_counts()
        rings = carriers.index[2 * carriers > ring_size.reindex(carriers.index).to_numpy()]
        ring_f1 = f1.reindex(rings)
        benign = has & ~abuse
        rows.append(
            {
                "trait": trait,
                "abuse_rings": len(rings),
                "mean_f1": _mean(ring_f1),
                "min_f1": float(ring_f1.min()) if len(ring_f1) else math.nan,
                "abuse_accounts": int((has & abuse).sum()),
                "abuse_flagged_share": _ratio(
                    int((has & abuse & is_flagged).sum()), int((has & abuse).sum())
                ),
                "benign_accounts": int(benign.sum()),
                "benign_flagged": int((benign & is_flagged).sum()),
                "benign_in_rings": int((benign & in_found).sum()),
            }
        )
    return pd.DataFrame(rows, columns=list(_TRAP_COLUMNS))


_TRAP_COLUMNS = (
    "trait",
    "abuse_rings",
    "mean_f1",
    "min_f1",
    "abuse_accounts",
    "abuse_flagged_share",
    "benign_accounts",
    "benign_flagged",
    "benign_in_rings",
)


def _share_050(f1: pd.Series) -> float:
    return float((f1 >= 0.5).mean())


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _clean(value):
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return "—" if value is None else str(value)
