"""Raw request logs rendered from the synthetic platform, with each request's planted template.

The platform's traffic stage plants, per account-hour-model slice, a number of requests, an
IP and a template (see :mod:`graphinv.synth.traffic`). This module runs the same stages with
the same seeds and renders every request as one JSON line of the request-log schema
(``schemas/request_log.schema.json``): time inside its hour, account, API key, model, IP,
user agent (the account's ``api_client``), token counts that sum to the planted ``usage``,
and a prompt:

* a **template** prompt is the template's scaffold with paraphrase noise (one of a few
  variants: a substituted word, a dropped word, case and spacing) and a filling (another
  question, other numbers, quoted spans);
* an **enterprise app** sends its long system prompt (its template) with free-form user text;
* a share of chat-style requests carry one of a few stock system prompts;
* **free-form** prompts (about half of each person's own habits) are fresh text each time.

``write_logs`` writes, beside the usual planted tables in ``OUT``: ``OUT/logs/`` (the
request logs, JSONL.gz parts), ``OUT/base/`` (what an account export holds: accounts,
card and sign-up IP links, IP and card attributes, labels) and
``OUT/request_labels.parquet`` (``request_id``, planted ``template`` of the user text or
empty for free-form, ``system_template``).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as tmp:
...     summary = write_logs(Path(tmp), preset="small", seed=0, n_accounts=300)
...     first = next((Path(tmp) / "logs").iterdir()).name
>>> summary["requests"] > 10_000, first
(True, 'requests-00000.jsonl.gz')
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphinv.schema import Platform
from graphinv.synth.arrays import dotted_quads, numbered
from graphinv.synth.assemble import _cap, assemble
from graphinv.synth.infra import RING_TEMPLATES_PER_CATEGORY, Infrastructure, build_infrastructure
from graphinv.synth.output import write_platform
from graphinv.synth.params import SynthParams, resolve_params
from graphinv.synth.population import Population, build_population
from graphinv.synth.traffic import Rows, build_traffic
from graphinv.synth.world import CATEGORIES, HOUR, MODELS, K

LOG_KINDS = ("ip", "prompt_fingerprint", "api_client")

_OPENERS = {
    "chat": ("let us talk about", "i would like your opinion on", "tell me what you think of"),
    "summarise": ("summarise the following text", "give a short summary of",
                  "list the key points of"),
    "translate": ("translate the following into french", "translate this passage into spanish",
                  "translate into german"),
    "writing": ("write a short story about", "draft an email about", "write a poem about"),
    "classification": ("classify the sentiment of", "label the category of",
                       "tag this support ticket"),
    "coding": ("write a python function that", "fix the bug in this javascript code",
               "refactor this sql query"),
    "math": ("solve the equation", "calculate the integral of", "prove the theorem that"),
    "agentic_tool_use": ("you are an agent with tools available",
                         "decide the next action and tool call", "plan the api call sequence"),
    "science": ("explain the chemistry of", "describe the physics experiment",
                "explain the biology of"),
    "reasoning_puzzles": ("solve this logic puzzle", "which statement must be true in this riddle",
                          "deduce the answer to this brain teaser"),
}
_REASONING = (
    "think step by step",
    "show your full reasoning before the final answer",
    "write out your complete chain of thought",
    "you are a patient teacher explain every step",
    "grade the answer with the rubric and explain",
)
_SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a helpful assistant. Answer concisely.",
    "You are ChatBot, a large language model. Be accurate and friendly.",
)
_SYLLABLES = ("ka", "lo", "mi", "ra", "te", "su", "no", "vi", "pe", "do", "an", "el", "or",
              "is", "un", "ba", "ge", "ho", "ju", "ze", "qua", "fi", "ty", "wo")


@dataclass(frozen=True)
class LogParams:
    """How requests are rendered.

    ``free_form_share``: share of requests on a person's own templates sent as free-form
    text; ``chat_share``: share of requests sent as chat messages (with a stock system
    prompt); ``variants``: paraphrase variants per template; ``part_requests``: requests
    per JSONL.gz part.
    """

    free_form_share: float = 0.5
    chat_share: float = 0.4
    variants: int = 4
    part_requests: int = 500_000


def _words(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct pseudo-words of two or three syllables."""
    s = np.array(_SYLLABLES)
    two = np.char.add(s[:, None], s[None, :]).ravel()
    three = np.char.add(two[:, None], s[None, :]).ravel()
    pool = np.r_[two, three]
    return pool[rng.choice(len(pool), min(n, len(pool)), replace=False)]


def _json(text: str) -> str:
    """``text`` escaped for a JSON string (the renderer only emits `"` and `\\` specially)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


class _Renderer:
    """Template scaffolds, paraphrase variants, fillings and free-form text for one seed."""

    def __init__(self, infra: Infrastructure, *, seed: int, variants: int) -> None:
        rng = np.random.default_rng([seed, 77])
        self.vocab = _words(6_000, rng)
        self.variants = variants
        n_tpl = len(infra.tpl_category)
        heads, tails = [], []
        for t in range(n_tpl):
            r = np.random.default_rng([seed, 91, t])
            category = CATEGORIES[int(infra.tpl_category[t])]
            opener = _OPENERS[category][r.integers(len(_OPENERS[category]))]
            body = list(self.vocab[r.integers(0, len(self.vocab), r.integers(14, 30))])
            if infra.tpl_reasoning[t]:
                body.insert(r.integers(0, len(body)), _REASONING[r.integers(len(_REASONING))])
            tail = list(self.vocab[r.integers(0, len(self.vocab), r.integers(2, 9))])
            if r.random() < 0.5:
                tail += ["answer in", str(r.integers(2, 9)), "sentences."]
            for v in range(variants):
                words = [opener, *body]
                if v:  # paraphrase: swap a word, drop a word, or both; shout or not
                    i = r.integers(1, len(words))
                    words[i] = str(self.vocab[r.integers(len(self.vocab))])
                    if v % 2 == 0 and len(words) > 4:
                        del words[r.integers(1, len(words))]
                    if v == 3:
                        words[0] = words[0].upper()
                sep = "  " if v == 2 else " "
                head = sep.join(words)
                heads.append(_json(head[0].upper() + head[1:] + ":"))
                tails.append(_json(" " + " ".join(tail)))
        self.heads = pa.array(heads, pa.string())
        self.tails = pa.array(tails, pa.string())

    def fillings(self, n: int, rng: np.random.Generator) -> pa.Array:
        """Per request: 4-14 words, numbers, and half the time in double quotes."""
        count = rng.integers(4, 15, n)
        words = self.vocab[rng.integers(0, len(self.vocab), int(count.sum()))].astype(object)
        numbers = rng.random(len(words)) < 0.15
        words[numbers] = rng.integers(0, 10_000, int(numbers.sum())).astype(str)
        offsets = np.r_[0, np.cumsum(count)].astype(np.int32)
        lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(words, pa.string()))
        text = pc.binary_join(lists, " ")
        quoted = pa.array(rng.random(n) < 0.5)
        return pc.if_else(
            quoted,
            pc.binary_join_element_wise(' \\"', text, '\\"', ""),
            pc.binary_join_element_wise(" ", text, ""),
        )

    def free_form(self, n: int, rng: np.random.Generator) -> pa.Array:
        """Fresh text: 6-40 words from the whole vocabulary, now and then a number."""
        count = rng.integers(6, 41, n)
        words = self.vocab[rng.integers(0, len(self.vocab), int(count.sum()))].astype(object)
        numbers = rng.random(len(words)) < 0.05
        words[numbers] = rng.integers(0, 100, int(numbers.sum())).astype(str)
        offsets = np.r_[0, np.cumsum(count)].astype(np.int32)
        lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(words, pa.string()))
        return pc.binary_join(lists, " ")

    def template(self, tpl: np.ndarray, rng: np.random.Generator) -> pa.Array:
        variant = pa.array(tpl * self.variants + rng.integers(0, self.variants, len(tpl)))
        return pc.binary_join_element_wise(
            self.heads.take(variant), self.fillings(len(tpl), rng), self.tails.take(variant), ""
        )


@dataclass(frozen=True)
class _Stages:
    params: SynthParams
    pop: Population
    infra: Infrastructure
    rows: Rows
    platform: Platform


def _stages(params: SynthParams, seed: int) -> _Stages:
    """The generator's stages with :func:`graphinv.synth.assemble.build_platform`'s streams."""
    r_pop, r_infra, r_traffic, r_out = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    pop = build_population(params, rng=r_pop)
    infra = build_infrastructure(pop, params, rng=r_infra)
    rows = build_traffic(pop, infra, params, rng=r_traffic)
    platform = assemble(pop, infra, rows, params, rng=r_out)
    limits = np.where(
        pop.kind == K["enterprise_app"],
        params.enterprise_rate_limit_per_hour,
        params.rate_limit_per_hour,
    ).astype(float)
    capped, _ = _cap(rows, pop.number, limits, params.window_days * 24)
    return _Stages(params, pop, infra, capped, platform)


def _template_roles(stages: _Stages) -> tuple[np.ndarray, np.ndarray]:
    """Per template: sent as an enterprise system prompt; a person's own (one sender)."""
    infra, pop, rows = stages.infra, stages.pop, stages.rows
    n_tpl = len(infra.tpl_category)
    enterprise = np.zeros(n_tpl, dtype=bool)
    enterprise[rows.tpl[pop.kind[rows.acc] == K["enterprise_app"]]] = True
    pairs = np.unique(rows.acc * n_tpl + rows.tpl)
    senders = np.bincount(pairs % n_tpl, minlength=n_tpl)
    special = np.zeros(n_tpl, dtype=bool)
    special[: stages.params.popular_templates] = True
    special[infra.farm_tpl] = True
    campaigns = stages.params.campaigns
    for base, campaign in zip(infra.campaign_tpl_base, campaigns, strict=True):
        special[base : base + len(campaign.categories)] = True
    for g in np.flatnonzero(infra.ring_tpl_base >= 0):
        n_cat = len(campaigns[pop.g_campaign[g]].categories)
        base = infra.ring_tpl_base[g]
        special[base : base + n_cat * RING_TEMPLATES_PER_CATEGORY] = True
    personal = (senders == 1) & ~special & ~enterprise
    return enterprise, personal


def base_platform(platform: Platform, stages: _Stages | None = None) -> Platform:
    """What an account export holds beside the logs: accounts, attributes, labels, and the
    links request logs cannot show (cards, sign-up IPs)."""
    links = platform.links[~platform.links["kind"].isin(LOG_KINDS)]
    if stages is not None:
        pop, infra, params = stages.pop, stages.infra, stages.params
        has = np.flatnonzero(infra.signup_ip >= 0)
        start = pd.Timestamp(params.window_start)
        end = params.window_days * 24 * HOUR - 1
        width = max(7, len(str(len(pop.kind))))
        ids = numbered("acct_", pop.number[has], width).to_pandas()
        when = start + pd.to_timedelta(np.clip(pop.created[has], None, end), unit="s")
        signup = pd.DataFrame({
            "account_id": ids.to_numpy(),
            "kind": "ip",
            "value": dotted_quads(infra.ip_int[infra.signup_ip[has]]).to_pandas().to_numpy(),
            "first_seen": when,
            "last_seen": when,
            "count": np.ones(len(has), dtype=np.int64),
        })
        links = pd.concat([links, signup], ignore_index=True)
    return Platform(
        accounts=platform.accounts,
        links=links.reset_index(drop=True),
        usage=platform.usage.iloc[:0],
        ips=platform.ips,
        payment_methods=platform.payment_methods,
        labels=platform.labels,
    )


def write_logs(
    out: Path,
    *,
    preset: str = "small",
    seed: int = 0,
    n_accounts: int | None = None,
    log_params: LogParams | None = None,
    **overrides: object,
) -> dict[str, int]:
    """Write the planted platform, its request logs, a base export and request labels.

    Parameters
    ----------
    out
        Folder: planted tables at the top, ``logs/``, ``base/``, ``request_labels.parquet``.
    preset, seed, n_accounts, overrides
        As for :func:`graphinv.synth.generate` (same seed, same platform).
    log_params
        Rendering settings (:class:`LogParams`).

    Returns
    -------
    dict
        ``requests``, ``parts``, ``templates`` (planted templates used by some request),
        ``free_form`` (free-form requests).
    """
    lp = log_params or LogParams()
    params = resolve_params(preset=preset, n_accounts=n_accounts, **overrides)
    stages = _stages(params, seed)
    out = Path(out)
    write_platform(stages.platform, out)
    write_platform(base_platform(stages.platform, stages), out / "base")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("requests-*.jsonl.gz"):
        old.unlink()

    pop, infra, rows = stages.pop, stages.infra, stages.rows
    renderer = _Renderer(infra, seed=seed, variants=lp.variants)
    enterprise, personal = _template_roles(stages)
    rng = np.random.default_rng([seed, 5])
    width = max(7, len(str(len(pop.kind))))
    ids = numbered("acct_", np.arange(len(pop.kind) + 1), width)
    keys = numbered("key_", np.arange(len(pop.kind) + 1), width)
    ips = dotted_quads(infra.ip_int)
    clients = stages.platform.links.loc[
        stages.platform.links["kind"] == "api_client", ["account_id", "value"]
    ].set_index("account_id")["value"]
    start = pd.Timestamp(params.window_start).tz_convert(None).to_datetime64().astype("M8[s]")

    # One request per planted request of each (capped) slice, in slice order.
    per_slice = rows.requests
    slice_of = np.repeat(np.arange(len(per_slice)), per_slice)
    total = len(slice_of)
    rank = np.arange(total) - np.repeat(np.cumsum(per_slice) - per_slice, per_slice)
    labels = []
    parts = 0
    free_total = 0
    for lo in range(0, total, lp.part_requests):
        hi = min(lo + lp.part_requests, total)
        s = slice_of[lo:hi]
        n = hi - lo
        acc, tpl = rows.acc[s], rows.tpl[s]
        r_in_slice, size = rank[lo:hi], per_slice[s]
        inp = rows.input_tokens[s] // size + (r_in_slice < rows.input_tokens[s] % size)
        outp = rows.output_tokens[s] // size + (r_in_slice < rows.output_tokens[s] % size)
        seconds = rows.hour[s] * HOUR + rng.integers(0, HOUR, n)
        when = pa.array((start + seconds.astype("timedelta64[s]")).astype(str))
        account = ids.take(pa.array(pop.number[acc]))
        free = personal[tpl] & (rng.random(n) < lp.free_form_share)
        ent = enterprise[tpl]
        chat = ent | (rng.random(n) < lp.chat_share)
        stock = rng.integers(0, len(_SYSTEM_PROMPTS), n)
        text = pc.if_else(
            pa.array(free | ent), renderer.free_form(n, rng), renderer.template(tpl, rng)
        )
        system = pc.if_else(
            pa.array(ent),
            renderer.template(tpl, rng),
            pa.array([_json(p) for p in _SYSTEM_PROMPTS], pa.string()).take(pa.array(stock)),
        )
        body = pc.if_else(
            pa.array(chat),
            pc.binary_join_element_wise(
                '"messages":[{"role":"system","content":"', system,
                '"},{"role":"user","content":"', text, '"}]', "",
            ),
            pc.binary_join_element_wise('"prompt":"', text, '"', ""),
        )
        request_id = numbered("r", np.arange(lo, hi), 9)
        ua = pa.array(clients.reindex(account.to_pandas()).to_numpy(), pa.string())
        line = pc.binary_join_element_wise(
            '{"request_id":"', request_id,
            '","time":"', when, 'Z","account_id":"', account,
            '","api_key_id":"', keys.take(pa.array(pop.number[acc])),
            '","model":"', pa.array(np.array(MODELS)[rows.model[s]]),
            '","ip":"', ips.take(pa.array(rows.ip[s])),
            '","user_agent":"', ua, '",', body,
            ',"input_tokens":', pa.array(inp).cast(pa.string()),
            ',"output_tokens":', pa.array(outp).cast(pa.string()), "}", "",
        )
        with gzip.open(logs / f"requests-{parts:05d}.jsonl.gz", "wb", compresslevel=1) as f:
            f.write("\n".join(line.to_pylist()).encode() + b"\n")
        parts += 1
        free_total += int(free.sum())
        tpl_name = numbered("tpl_", tpl, 6)
        labels.append(pa.table({
            "request_id": request_id,
            "template": pc.if_else(pa.array(free | ent), pa.scalar(None, pa.string()), tpl_name),
            "system_template": pc.if_else(
                pa.array(ent), tpl_name,
                pc.if_else(pa.array(chat), numbered("sys_", stock, 1),
                           pa.scalar(None, pa.string())),
            ),
        }))
    pq.write_table(pa.concat_tables(labels), out / "request_labels.parquet")
    return {
        "requests": int(total),
        "parts": parts,
        "templates": len(np.unique(rows.tpl)),
        "free_form": free_total,
    }
