"""Template fingerprints: paraphrases join, free-form text stays apart, ids stable across days."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from graphinv.errors import ConfigError, InputError
from graphinv.ingest.fingerprint import (
    EMPTY,
    FREE_FORM,
    FingerprintParams,
    TemplateClusterer,
    TemplateIndex,
    minhash,
    normalise,
)
from graphinv.ingest.prompt_rules import classify

SCAFFOLD = (
    "You are an expert math tutor. Solve the following competition problem and show your "
    "full reasoning, checking every intermediate result twice before you commit to the final "
    "boxed answer. Problem: {q} Format the answer as a single number."
)
OTHER = (
    "Write a python function that validates the input below against the company style "
    "guide, raises a clear error for every violation and returns the cleaned record. "
    "Input: {q} Include unit tests."
)


def words(rng: np.random.Generator, n: int) -> str:
    vocab = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "lmnrst"]
    return " ".join(rng.choice(vocab, n))


def paraphrase(text: str, rng: np.random.Generator) -> str:
    """Case, spacing and one substituted word: what operators do to dodge exact matching."""
    tokens = text.split(" ")
    i = rng.integers(1, len(tokens))
    tokens[i] = "indeed"
    out = ("  " if rng.random() < 0.5 else " ").join(tokens)
    return out.upper() if rng.random() < 0.2 else out


def render(scaffold: str, rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        q = f'"{words(rng, 6)}" with {rng.integers(1000)} items' if rng.random() < 0.5 else \
            words(rng, int(rng.integers(3, 9)))
        out.append(paraphrase(scaffold.format(q=q), rng))
    return out


def test_paraphrases_join_and_free_form_stays_apart():
    rng = np.random.default_rng(3)
    a, b = render(SCAFFOLD, rng, 300), render(OTHER, rng, 300)
    free = [words(rng, int(rng.integers(8, 40))) for _ in range(500)]
    texts = a + b + free
    order = rng.permutation(len(texts))
    clusterer = TemplateClusterer(TemplateIndex.empty(FingerprintParams()))
    docs = np.concatenate([clusterer.add(pa.array([texts[i] for i in part]))
                           for part in np.array_split(order, 4)])
    clusterer.finish()
    code = np.empty(len(texts), dtype=np.int64)
    code[order] = clusterer.cluster_of(docs)
    assert len(set(code[:300])) == 1 and code[0] >= 0
    assert len(set(code[300:600])) == 1 and code[300] >= 0
    assert code[0] != code[300]
    assert (code[600:] == FREE_FORM).all()
    assert len(clusterer.index) == 2


def test_ids_are_stable_across_days(tmp_path):
    rng = np.random.default_rng(4)
    params = FingerprintParams()
    day1 = TemplateClusterer(TemplateIndex.load(tmp_path / "index", params))
    docs = day1.add(pa.array(render(SCAFFOLD, rng, 50) + render(OTHER, rng, 50)))
    day1.finish()
    ids1 = day1.index.templates["fingerprint"].to_numpy()[day1.cluster_of(docs)]
    day1.index.save(tmp_path / "index")

    day2 = TemplateClusterer(TemplateIndex.load(tmp_path / "index", params))
    docs = day2.add(pa.array(render(OTHER, rng, 30) + render(SCAFFOLD, rng, 30)))
    day2.finish()
    ids2 = day2.index.templates["fingerprint"].to_numpy()[day2.cluster_of(docs)]
    assert set(ids2[:30]) == {ids1[60]} and set(ids2[30:]) == {ids1[0]}
    assert len(day2.index) == 2


def test_index_refuses_other_settings_or_key(tmp_path):
    index = TemplateIndex.empty(FingerprintParams())
    index.save(tmp_path)
    with pytest.raises(InputError, match="other settings or another key"):
        TemplateIndex.load(tmp_path, FingerprintParams(salt="another key"))
    with pytest.raises(ConfigError):
        FingerprintParams(num_perm=60, bands=16)


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(5)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = list(dict.fromkeys("".join(rng.choice(letters, 7)) for _ in range(500)))
    base = vocab[:200]
    shared = 120  # of 200 words: 3-gram Jaccard about (shared - 2) / (400 - shared - 2)
    other = base[:shared] + vocab[200 : 400 - shared]
    sig, n_words = minhash(normalise(pa.array([" ".join(base), " ".join(other), ""])),
                           FingerprintParams(num_perm=120, bands=20))
    estimate = (sig[0] == sig[1]).mean()
    truth = (shared - 2) / (400 - shared - 2)
    assert abs(estimate - truth) < 0.12
    assert n_words.tolist() == [200, 200, 0]


def test_salt_changes_signatures_and_empty_texts():
    texts = pa.array(["the same words in the same order", "   ", None])
    plain, _ = minhash(normalise(texts), FingerprintParams())
    salted, _ = minhash(normalise(texts), FingerprintParams(salt="k" * 16))
    assert (plain[0] != salted[0]).mean() > 0.9
    clusterer = TemplateClusterer(TemplateIndex.empty(FingerprintParams()))
    docs = clusterer.add(texts)
    assert clusterer.cluster_of(docs).tolist() == [-1, EMPTY, EMPTY]


def test_normalise_masks_fillings():
    out = normalise(pa.array(['Sum 3,141.5 and "quoted words here" then ```code```!']))
    assert out.to_pylist()[0].split() == ["sum", "0", "and", "qstr", "then", "qcode"]


@pytest.mark.parametrize(
    ("text", "category", "rules"),
    [
        ("solve the integral and think step by step", "math", ("step_by_step",)),
        ("write a python function show your full reasoning", "coding", ("full_reasoning",)),
        ("grade the answer with this rubric", "chat", ("rubric_grading",)),
        ("you are a patient physics teacher explain the experiment", "science",
         ("teacher_persona",)),
        ("you are an agent with tools available decide the next action", "agentic_tool_use", ()),
        ("solve this logic puzzle which statement must be true", "reasoning_puzzles", ()),
        ("summarise the following text in three key points", "summarise", ()),
        ("hello how was your weekend", "chat", ()),
    ],
)
def test_rules(text, category, rules):
    found = classify(text)
    assert found.category == category
    assert found.reasoning_rules == rules
    assert found.elicits_reasoning == bool(rules)


def test_sorted_bands_match_a_stable_sort_through_inserts_and_removals():
    from graphinv.ingest.fingerprint import _SortedBands

    rng = np.random.default_rng(5)
    bands = _SortedBands(3)
    keys = np.zeros((0, 3), np.uint64)
    for _ in range(6):
        new = rng.integers(0, 40, (rng.integers(0, 50), 3)).astype(np.uint64)
        merged = [bands.merged(b, new[:, b]) for b in range(3)]
        keys = np.concatenate([keys, new])
        for b, (sorted_keys, items) in enumerate(merged):
            order = np.argsort(keys[:, b], kind="stable")
            assert (items == order).all() and (sorted_keys == keys[order, b]).all()
        keep = rng.random(len(keys)) < 0.7
        bands.set_kept(merged, keep)
        keys = keys[keep]
    bands.insert(keys[:5])
    assert len(bands) == len(keys) + 5


def test_clusterer_without_memory_answers_what_attribution_asks():
    rng = np.random.default_rng(6)
    texts = render(SCAFFOLD, rng, 40) + [words(rng, 20) for _ in range(40)]
    parts = np.array_split(rng.permutation(len(texts)), 4)
    full = TemplateClusterer(TemplateIndex.empty(FingerprintParams()))
    lean = TemplateClusterer(TemplateIndex.empty(FingerprintParams()), remember_all=False)
    placed = np.zeros(0, dtype=np.int64)
    for part in parts:
        chunk = pa.array([texts[i] for i in part])
        docs, same = full.add(chunk), lean.add(chunk)
        if not len(placed):
            placed = docs[full.cluster_of(docs) >= 0]
        assert (docs == same).all()
        assert (full.cluster_of(docs) == lean.cluster_of(docs)).all()
        moved = np.r_[lean.resolved, lean.dropped]
        assert (full.cluster_of(moved) == lean.cluster_of(moved)).all()
    # Documents of the first chunk that joined a template then are not asked for again.
    assert len(placed)
    with pytest.raises(ValueError, match="no longer tracked"):
        lean.cluster_of(placed)
    full.finish()
    lean.finish()
    assert (full.cluster_of(lean.dropped) == lean.cluster_of(lean.dropped)).all()
    assert (lean.cluster_of(lean.dropped) == FREE_FORM).all()
