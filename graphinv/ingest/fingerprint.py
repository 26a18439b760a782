"""Prompt-template fingerprints: one id for every prompt built from one scaffold.

A distillation operator sends one scaffold with thousands of fillings (another question,
other numbers, other names) from thousands of accounts. The pipeline here turns each prompt
into a template id without keeping its text:

1. **normalise** (vectorised, Arrow compute): fenced code and quoted spans become
   ``qcode``/``qstr`` (one pass over the text); then, once per distinct word of a chunk,
   lower case, digits as ``0``, punctuation as a word break;
2. **shingle and MinHash** (vectorised numpy, no per-prompt Python): word 3-grams hashed
   from the UTF-8 bytes; one-permutation MinHash with ``num_perm`` bins and rotation
   densification (one pass over the shingles instead of one per hash function);
3. **LSH and cluster**: ``bands`` × ``rows`` banding proposes pairs (prompt–prompt within a
   chunk, prompt–known template through a persisted index); a pair joins when the
   estimated Jaccard similarity reaches ``threshold``; connected components are templates.

A component becomes a template only once it holds ``min_requests`` requests (a prompt sent
once is free-form text, not a template); until then it waits in a bounded pending pool,
so instances spread over several chunks still meet. The :class:`TemplateIndex` keeps a few
representative signatures per template (never text) next to the output, so the same
template tomorrow gets the same id; a new template's id is a salted hash of its first
normalised instance.

Examples
--------
>>> import pyarrow as pa
>>> prompts = pa.array([
...     "Solve step by step: what is 12 + 7? Give the full reasoning.",
...     "Solve step by step: what is 3 + 99? Give the full reasoning.",
...     "SOLVE step-by-step:  what is 5 + 5?  Give the full reasoning!",
...     "tell me a joke about cats",
... ])
>>> clusterer = TemplateClusterer(TemplateIndex.empty(FingerprintParams()))
>>> docs = clusterer.add(prompts)
>>> clusterer.finish()
>>> codes = clusterer.cluster_of(docs)
>>> bool(codes[0] == codes[1] == codes[2] >= 0), int(codes[3])
(True, -2)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from graphinv.errors import ConfigError, InputError
from graphinv.ingest.prompt_rules import classify

INDEX_VERSION = 1
# Codes of a prompt's template besides a template index >= 0.
PENDING, FREE_FORM, EMPTY = -1, -2, -3

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_SPACE = 32


@dataclass(frozen=True)
class FingerprintParams:
    """Settings of the template fingerprint; fixed for the life of a template index.

    Parameters
    ----------
    num_perm
        MinHash hash functions per prompt.
    bands
        LSH bands (``num_perm`` must be a multiple); ``rows = num_perm // bands``. With the
        defaults (20 × 3) a pair at Jaccard 0.45 is proposed with probability 0.85, one at
        0.3 with 0.42 and one at 0.1 with 0.02; pairs are then checked against
        ``threshold``.
    threshold
        Estimated Jaccard similarity of word 3-grams at which two prompts join.
    shingle
        Words per shingle.
    min_requests
        Requests a cluster needs to become a template.
    reps_per_template
        Representative signatures kept per template in the index.
    max_pending
        Distinct prompts waiting for a second instance; beyond it the oldest become
        free-form (bounds memory whatever the log size).
    short_words
        Texts with fewer words join only texts with the same signature: in a handful of
        words a shingle Jaccard cannot tell a filled-in slot from another prompt ("You are
        a helpful assistant." vs "… Answer concisely.").
    salt
        Mixed into every hash (the CLI uses the pseudonymisation key when given, so the
        index cannot be probed with guessed texts without it).
    """

    num_perm: int = 60
    bands: int = 20
    threshold: float = 0.4
    shingle: int = 3
    min_requests: int = 2
    reps_per_template: int = 6
    max_pending: int = 400_000
    short_words: int = 8
    salt: str = ""

    def __post_init__(self) -> None:
        if self.num_perm < 8 or self.bands < 1 or self.num_perm % self.bands:
            raise ConfigError("num_perm must be >= 8 and a multiple of bands")
        if not 0 < self.threshold <= 1:
            raise ConfigError("threshold must be in (0, 1]")
        if self.shingle < 1 or self.min_requests < 1 or self.reps_per_template < 1:
            raise ConfigError("shingle, min_requests and reps_per_template must be >= 1")
        if self.max_pending < 0:
            raise ConfigError("max_pending must be >= 0")

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def identity(self) -> dict[str, object]:
        """What must match for an index to be reused (the salt only as a hash)."""
        out = {k: v for k, v in asdict(self).items()
               if k in ("num_perm", "bands", "shingle", "short_words")}
        out["salt_sha256"] = hashlib.sha256(self.salt.encode()).hexdigest()[:16]
        return out


# -- normalisation and MinHash -------------------------------------------------------------

_CODE = r"(?s)```.*?```"
_QUOTED = r"\"[^\"\n]{0,500}\"|“[^”\n]{0,500}”|«[^»\n]{0,500}»|`[^`\n]{0,200}`"
_QUOTED_ASCII = r"\"[^\"\n]{0,500}\""
_ANY_QUOTE = "[\"“«`]"
_OTHER_QUOTE = "[“«`]"
_NUMBER = r"\d[\d.,:/]*"
_PUNCTUATION = r"[^\p{L}\p{N}\s]+"


def mask(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Fenced code and quoted spans replaced by ``qcode``/``qstr``: the passes that must see
    the whole text. Case, numbers and punctuation are normalised word by word in
    :func:`minhash`, once per distinct word of a chunk.

    Examples
    --------
    >>> mask(pa.array(['Fix "a=1" in Line 42', None])).to_pylist()
    ['Fix  qstr  in Line 42', None]
    """
    out = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if pc.any(pc.match_substring(out, "```")).as_py():
        out = pc.replace_substring_regex(out, _CODE, " qcode ")
    # The quote regex runs only on texts holding a quote character (one character-class
    # scan is far cheaper than the regex over texts it cannot change).
    quoted = pc.fill_null(pc.match_substring_regex(out, _ANY_QUOTE), False)
    if pc.any(quoted).as_py():
        held = out.filter(quoted)
        # Each alternative of _QUOTED starts with its own quote character, so in a text
        # without the other three only the ASCII one can match: its one-alternative regex
        # gives the same text, several times faster than the alternation.
        changed = pc.replace_substring_regex(held, _QUOTED_ASCII, " qstr ")
        other = pc.fill_null(pc.match_substring_regex(held, _OTHER_QUOTE), False)
        if pc.any(other).as_py():
            changed = pc.replace_with_mask(changed, other, pc.replace_substring_regex(
                held.filter(other), _QUOTED, " qstr "))
        out = pc.replace_with_mask(out, quoted, changed)
    return out


def _clean_words(words: pa.Array) -> pa.Array:
    out = pc.utf8_lower(words)
    out = pc.replace_substring_regex(out, _NUMBER, "0")
    return pc.replace_substring_regex(out, _PUNCTUATION, " ")


def normalise(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lower-case text with fillings masked and punctuation gone (what the rules read).

    Examples
    --------
    >>> normalise(pa.array(['Fix "a=1" in Line 42, please!', None])).to_pylist()
    ['fix qstr in line 0 please', None]
    """
    out = _clean_words(mask(texts))
    return pc.utf8_trim(pc.replace_substring_regex(out, r"\s+", " "), " ")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the output (uint64, wraps).

    ``x`` is left as it is; the steps work in place on two buffers instead of allocating
    one per step (these arrays hold one value per word of a chunk)."""
    y = np.right_shift(x, np.uint64(30))
    y ^= x
    y *= np.uint64(0xBF58476D1CE4E5B9)
    t = np.right_shift(y, np.uint64(27))
    y ^= t
    y *= np.uint64(0x94D049BB133111EB)
    np.right_shift(y, np.uint64(31), out=t)
    y ^= t
    return y


def _salt_word(salt: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "big"))


def _hash_strings(words: pa.Array, salt: str) -> np.ndarray:
    """A stable 64-bit hash of each string, from its UTF-8 bytes (vectorised)."""
    words = words.cast(pa.large_string())
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(words.buffers()[1], dtype=np.int64)[words.offset : words.offset + n + 1]
    buffer = words.buffers()[2]
    data = (np.frombuffer(buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
            if buffer is not None else np.zeros(0, dtype=np.uint8))
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    longest = int(lengths.max()) if n else 1
    powers = np.cumprod(np.full(max(longest, 1), np.uint64(1099511628211), dtype=np.uint64))
    powers = np.r_[np.uint64(1), powers[:-1]]
    with np.errstate(over="ignore"):
        contrib = (data.astype(np.uint64) + np.uint64(1)) * powers[position]
        sums = np.zeros(n, dtype=np.uint64)
        nonempty = lengths > 0
        sums[nonempty] = np.add.reduceat(contrib, starts[nonempty]) if len(contrib) else 0
        return _mix(sums ^ _salt_word(salt) ^ lengths.astype(np.uint64))


def minhash(normalised: pa.Array, params: FingerprintParams) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (n × num_perm, uint32) and word counts of normalised texts.

    Texts without a word get an all-``0xFFFFFFFF`` signature and a word count of 0.

    Examples
    --------
    >>> sig, words = minhash(normalise(pa.array(["a b c d", "a b c d", "x"])),
    ...                      FingerprintParams())
    >>> bool((sig[0] == sig[1]).all()), bool((sig[0] == sig[2]).any()), words.tolist()
    (True, False, [4, 4, 1])
    """
    n = len(normalised)
    k = params.num_perm
    none = np.full((n, k), np.iinfo(np.uint32).max, dtype=np.uint32)
    if n == 0:
        return none, np.zeros(0, dtype=np.int64)
    lists = pc.utf8_split_whitespace(normalised.fill_null(""))
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    # Each distinct raw word is cleaned (case, digits, punctuation) and hashed once; a word
    # like "step-by-step" cleans to several words, so occurrences expand to its pieces.
    encoded = pc.dictionary_encode(flat)
    pieces = pc.utf8_split_whitespace(_clean_words(encoded.dictionary))
    piece_count = pc.list_value_length(pieces).to_numpy(zero_copy_only=False).astype(np.int64)
    piece_flat = pc.list_flatten(pieces)
    piece_ok = pc.greater(pc.binary_length(piece_flat), 0).to_numpy(zero_copy_only=False)
    piece_hash = _hash_strings(piece_flat, params.salt)
    piece_start = np.r_[0, np.cumsum(piece_count)[:-1]]
    occurrence = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    count = piece_count[occurrence]
    index = np.repeat(piece_start[occurrence], count) + (
        np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count))
    keep_piece = piece_ok[index]
    words = piece_hash[index][keep_piece]
    doc_of_word = np.repeat(parent, count)[keep_piece]
    n_words = np.bincount(doc_of_word, minlength=n)
    if len(words) == 0:
        return none, n_words

    # Shingles: s consecutive words of one text; a text shorter than s is one shingle.
    s = params.shingle
    w = len(words)
    value = words.copy()
    ok = np.ones(w, dtype=bool)
    with np.errstate(over="ignore"):
        for j in range(1, s):
            nxt = np.zeros(w, dtype=np.uint64)
            nxt[: w - j] = words[j:]
            same = np.zeros(w, dtype=bool)
            same[: w - j] = doc_of_word[j:] == doc_of_word[: w - j]
            ok &= same
            value = _mix(value * np.uint64(31) + np.where(same, nxt, np.uint64(0)) + np.uint64(j))
    first_of_doc = np.r_[True, doc_of_word[1:] != doc_of_word[:-1]]
    keep = ok | (first_of_doc & (n_words[doc_of_word] < s))
    shingles = value[keep]
    owner = doc_of_word[keep]

    # One-permutation hashing: the shingle hash picks one of k bins and its high 32 bits
    # compete for that bin's minimum; one pass instead of k (Li, Owen & Zhang, 2012).
    with np.errstate(over="ignore"):
        mixed = _mix(shingles ^ _salt_word(params.salt + "/oph"))
    flat_bin = owner * k + (mixed % np.uint64(k)).astype(np.int64)
    sig = none.ravel()
    np.minimum.at(sig, flat_bin, (mixed >> np.uint64(32)).astype(np.uint32))
    return _densify(sig.reshape(n, k), n_words > 0), n_words


def _densify(sig: np.ndarray, has_words: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin to the right (circular), shifted by
    the distance, so short texts still compare on all k positions (rotation densification,
    Shrivastava & Li, 2014)."""
    empty_value = np.iinfo(np.uint32).max
    # Only texts with an empty bin change (long texts fill all k bins).
    need = np.flatnonzero((sig == empty_value).any(axis=1) & has_words)
    full = sig.copy()
    full[~has_words] = empty_value
    if not len(need):
        return full
    full[need] = _densify_rows(sig[need])
    return full


def _densify_rows(sig: np.ndarray) -> np.ndarray:
    n, k = sig.shape
    empty_value = np.iinfo(np.uint32).max
    columns = np.ascontiguousarray(sig.T)
    filled = columns != empty_value
    # Walking down from bin k - 1, the nearest filled bin to the right (circularly) starts
    # as each row's first filled bin p, k + p bins away from bin 0: carry its value with
    # distance p (every row has a filled bin), instead of first walking the k bins again.
    first = filled.argmax(axis=0)
    carry = columns[first, np.arange(n)]
    distance = first.astype(np.uint32)
    out = np.empty_like(columns)
    step = np.uint32(0x9E3779B1)
    with np.errstate(over="ignore"):
        for j in range(k - 1, -1, -1):
            has = filled[j]
            np.copyto(carry, columns[j], where=has)
            distance += np.uint32(1)
            distance[has] = 0
            # A filled bin has distance 0, so it keeps its own value.
            np.multiply(distance, step, out=out[j])
            out[j] += carry
    return np.ascontiguousarray(out.T)


def band_keys(sig: np.ndarray, params: FingerprintParams) -> np.ndarray:
    """One uint64 key per band (n × bands); equal keys propose a pair."""
    r = params.rows
    out = np.empty((len(sig), params.bands), dtype=np.uint64)
    wide = sig.astype(np.uint64)
    with np.errstate(over="ignore"):
        for band in range(params.bands):
            acc = np.full(len(sig), np.uint64(band + 1))
            for j in range(band * r, (band + 1) * r):
                acc = _mix(acc * np.uint64(0x100000001B3) ^ wide[:, j])
            out[:, band] = acc
    return out


# -- the persisted index -----------------------------------------------------------------


@dataclass
class TemplateIndex:
    """Templates seen so far: ids, rule results and representative signatures (no text).

    ``templates`` has one row per template: ``fingerprint``, ``category``,
    ``category_rule``, ``elicits_reasoning``, ``reasoning_rules`` (``;``-separated rule
    names), ``template_tokens`` (words of the first instance after normalisation),
    ``requests`` (all time). ``signatures`` (r × num_perm uint32) belong to templates
    ``rep_template`` (r,).
    """

    params: FingerprintParams
    templates: pd.DataFrame
    signatures: np.ndarray
    rep_template: np.ndarray
    rep_words: np.ndarray
    _band_index: _SortedBands | None = field(default=None, repr=False)

    COLUMNS = ("fingerprint", "category", "category_rule", "elicits_reasoning",
               "reasoning_rules", "template_tokens", "requests")

    @classmethod
    def empty(cls, params: FingerprintParams) -> TemplateIndex:
        frame = pd.DataFrame({
            "fingerprint": pd.Series(dtype="str"), "category": pd.Series(dtype="str"),
            "category_rule": pd.Series(dtype="str"), "elicits_reasoning": pd.Series(dtype=bool),
            "reasoning_rules": pd.Series(dtype="str"),
            "template_tokens": pd.Series(dtype="int64"), "requests": pd.Series(dtype="int64"),
        })
        return cls(params, frame, np.zeros((0, params.num_perm), np.uint32),
                   np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.templates)

    @classmethod
    def load(cls, directory: Path, params: FingerprintParams) -> TemplateIndex:
        """Read an index written by :meth:`save`; an absent folder gives an empty index.

        Raises
        ------
        InputError
            The index was built with other settings or another salt (ids would not match).
        """
        meta_file = directory / "index.json"
        if not meta_file.exists():
            return cls.empty(params)
        meta = json.loads(meta_file.read_text())
        if meta.get("version") != INDEX_VERSION or meta.get("params") != params.identity():
            raise InputError(
                f"{directory}: template index built with other settings or another key "
                f"({meta.get('params')} vs {params.identity()}); use a fresh output folder"
            )
        frame = pq.read_table(directory / "templates.parquet").to_pandas()
        with np.load(directory / "signatures.npz") as stored:
            sig, rep, words = stored["signatures"], stored["rep_template"], stored["rep_words"]
        return cls(params, frame, sig.astype(np.uint32), rep.astype(np.int64),
                   words.astype(np.int64))

    def save(self, directory: Path) -> None:
        """Write the index (atomically per file) so the next run reuses its ids."""
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "templates.parquet.tmp"
        pq.write_table(pa.Table.from_pandas(self.templates, preserve_index=False), tmp)
        tmp.replace(directory / "templates.parquet")
        tmp = directory / "signatures.tmp.npz"
        np.savez_compressed(tmp, signatures=self.signatures, rep_template=self.rep_template,
                            rep_words=self.rep_words)
        tmp.replace(directory / "signatures.npz")
        meta = {"version": INDEX_VERSION, "params": self.params.identity()}
        (directory / "index.json").write_text(json.dumps(meta, indent=2) + "\n")

    def band_index(self) -> _SortedBands:
        """Representatives' band keys, sorted per band (kept up to date as reps are added)."""
        if self._band_index is None:
            self._band_index = _SortedBands(self.params.bands)
            self._band_index.insert(band_keys(self.signatures, self.params))
        return self._band_index

    def add_representatives(self, sig: np.ndarray, template: np.ndarray,
                            words: np.ndarray) -> None:
        if len(sig):
            if self._band_index is not None:
                self._band_index.insert(band_keys(sig, self.params))
            self.signatures = np.concatenate([self.signatures, sig])
            self.rep_template = np.concatenate([self.rep_template, template])
            self.rep_words = np.concatenate([self.rep_words, words])


class _SortedBands:
    """Band keys of numbered items, per band sorted by (key, item): what a stable argsort of
    all keys gives, maintained by merging new items in and filtering items out, so a chunk
    costs a linear pass over the pool instead of a sort of it."""

    def __init__(self, bands: int) -> None:
        self.keys = [np.zeros(0, np.uint64) for _ in range(bands)]
        self.items = [np.zeros(0, np.int64) for _ in range(bands)]

    def __len__(self) -> int:
        return len(self.items[0])

    def merged(self, band: int, new_keys: np.ndarray,
               order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This band's (keys, items) with items ``len(self) + i`` of ``new_keys`` merged in;
        on equal keys older items come first, as in a stable sort. ``order``: the stable
        argsort of ``new_keys`` when already known."""
        keys, items = self.keys[band], self.items[band]
        if order is None:
            order = np.argsort(new_keys, kind="stable")
        sorted_new = new_keys[order]
        at = np.searchsorted(keys, sorted_new, side="right") + np.arange(len(order))
        is_new = np.zeros(len(keys) + len(order), dtype=bool)
        is_new[at] = True
        out_keys = np.empty(len(is_new), np.uint64)
        out_items = np.empty(len(is_new), np.int64)
        out_keys[is_new], out_keys[~is_new] = sorted_new, keys
        out_items[is_new], out_items[~is_new] = order + len(self), items
        return out_keys, out_items

    def insert(self, new_keys: np.ndarray) -> None:
        """Append items numbered from ``len(self)`` with these keys (n × bands)."""
        merged = [self.merged(band, new_keys[:, band]) for band in range(len(self.keys))]
        self.keys = [keys for keys, _ in merged]
        self.items = [items for _, items in merged]

    def set_kept(self, merged: list[tuple[np.ndarray, np.ndarray]], keep: np.ndarray) -> None:
        """Become the ``keep`` items of ``merged`` (per band, as from :meth:`merged`),
        renumbered in order."""
        number = np.cumsum(keep) - 1
        for band, (keys, items) in enumerate(merged):
            stays = keep[items]
            self.keys[band], self.items[band] = keys[stays], number[items[stays]]


# -- clustering ------------------------------------------------------------------------------


@dataclass
class PreparedTexts:
    """One chunk of prompts made ready for clustering by :func:`prepare`: everything that
    needs no clusterer state, so chunks can be prepared in other processes.

    ``present`` are the rows with a text; ``inverse`` maps each to its distinct masked text
    (``unique``, first-appearance order); ``empty`` lists distinct texts without a word;
    ``live`` the others, with their ``weight`` (rows), ``sig``, ``n_words`` and band ``keys``;
    ``key_order`` (live × bands) is each band's stable argsort of ``keys``, sorted here so
    the clustering process only merges it into its pool.
    """

    n: int
    present: np.ndarray
    inverse: np.ndarray
    unique: pa.Array
    empty: np.ndarray
    live: np.ndarray
    weight: np.ndarray
    sig: np.ndarray
    n_words: np.ndarray
    keys: np.ndarray
    key_order: np.ndarray


def prepare(texts: pa.Array | pa.ChunkedArray, params: FingerprintParams) -> PreparedTexts:
    """Mask, deduplicate, MinHash and band one chunk of prompts (null: no prompt).

    Identical raw texts (a stock system prompt sent a thousand times) are masked once.

    Examples
    --------
    >>> ready = prepare(pa.array(["a b c d e", None, "a b c d e", "x"]), FingerprintParams())
    >>> ready.present.tolist(), ready.inverse.tolist(), ready.weight.tolist()
    ([0, 2, 3], [0, 0, 1], [2, 1])
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    present = np.flatnonzero(~np.asarray(texts.is_null().to_numpy(zero_copy_only=False)))
    raw = pc.dictionary_encode(texts.take(pa.array(present)))
    masked = pc.dictionary_encode(mask(raw.dictionary))
    unique = masked.dictionary
    inverse = masked.indices.to_numpy(zero_copy_only=False).astype(np.int64)[
        raw.indices.to_numpy(zero_copy_only=False)]
    weight = np.bincount(inverse, minlength=len(unique)).astype(np.int64)
    sig, n_words = minhash(unique, params)
    has_words = n_words > 0
    live = np.flatnonzero(has_words)
    keys = band_keys(sig[live], params)
    key_order = np.empty(keys.shape, dtype=np.int32 if len(keys) < 2**31 else np.int64)
    for band in range(params.bands):
        key_order[:, band] = np.argsort(keys[:, band], kind="stable")
    return PreparedTexts(
        n=len(texts), present=present, inverse=inverse, unique=unique,
        empty=np.flatnonzero(~has_words), live=live, weight=weight[live], sig=sig[live],
        n_words=n_words[live], keys=keys, key_order=key_order,
    )


class TemplateClusterer:
    """Assigns prompts to templates chunk by chunk, against and into a :class:`TemplateIndex`.

    :meth:`add` returns a document id per prompt (identical normalised prompts of one chunk
    share one); :meth:`cluster_of` maps document ids to template codes (row of
    ``index.templates``), :data:`PENDING` while a prompt waits for a second instance,
    :data:`FREE_FORM` once :meth:`finish` gave up on it, :data:`EMPTY` for prompts without
    a word. ``resolved`` lists documents that left the pending pool for a template in the
    last call, so a caller can attribute their earlier requests.

    With ``remember_all`` (the default) every document id ever returned can be looked up
    (8 bytes per distinct text of a chunk, so this grows with the log). Without it,
    :meth:`cluster_of` answers for the last chunk's documents, the pending ones, and those
    that left the pool in the last call (``resolved``, ``dropped``): what a caller
    attributing requests chunk by chunk asks, in memory bounded by the chunk and the pool.
    """

    def __init__(self, index: TemplateIndex, *, remember_all: bool = True) -> None:
        if not isinstance(remember_all, bool):
            raise ConfigError(f"remember_all must be True or False, not {remember_all!r}")
        self.index = index
        self.params = index.params
        # Every document's code (remember_all), else the codes of the last chunk's
        # documents (from ``_chunk_first``) and of the older ones that moved in the last call.
        self._doc_template: np.ndarray | None = (
            np.zeros(0, dtype=np.int64) if remember_all else None)
        self._chunk_first = 0
        self._chunk_codes = np.zeros(0, dtype=np.int64)
        self._moved_doc = np.zeros(0, dtype=np.int64)
        self._moved_code = np.zeros(0, dtype=np.int64)
        self._n_docs = 0
        self._clear_pending()
        # Every pending prompt has been looked up against the first this-many representatives.
        self._reps_checked = len(index.signatures)
        self._reps = np.bincount(index.rep_template, minlength=len(index)).astype(np.int64)
        self.resolved = np.zeros(0, dtype=np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)

    # -- public ----------------------------------------------------------------------------

    def add(self, texts: pa.Array | pa.ChunkedArray | PreparedTexts) -> np.ndarray:
        """Fingerprint one chunk of prompts (null: no prompt), or a chunk :func:`prepare`
        made ready; return their document ids."""
        ready = texts if isinstance(texts, PreparedTexts) else prepare(texts, self.params)
        doc_of_request = np.full(ready.n, -1, dtype=np.int64)
        self.resolved = np.zeros(0, dtype=np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)
        first = self._n_docs
        self._chunk_first = first
        self._chunk_codes = np.full(len(ready.unique) if len(ready.present) else 0, PENDING,
                                    np.int64)
        self._moved_doc = self._moved_code = np.zeros(0, dtype=np.int64)
        if len(ready.present) == 0:
            return doc_of_request
        doc_of_request[ready.present] = first + ready.inverse
        self._n_docs += len(ready.unique)
        if self._doc_template is not None:
            self._grow(self._n_docs)
        self._set(first + ready.empty, EMPTY)
        self._cluster(first + ready.live, ready)
        return doc_of_request

    def cluster_of(self, doc_ids: np.ndarray) -> np.ndarray:
        """Template code per document id (negative codes: see the class docstring).

        Raises
        ------
        ValueError
            Without ``remember_all``: a document neither of the last chunk, nor pending, nor
            moved in the last call.
        """
        out = np.full(len(doc_ids), EMPTY, dtype=np.int64)
        ok = np.flatnonzero(doc_ids >= 0)
        ids = doc_ids[ok]
        if self._doc_template is not None:
            out[ok] = self._doc_template[ids]
            return out
        in_chunk = ids >= self._chunk_first
        out[ok[in_chunk]] = self._chunk_codes[ids[in_chunk] - self._chunk_first]
        rest = np.flatnonzero(~in_chunk)
        lost = np.zeros(0, dtype=np.int64)
        for known, code in ((self._moved_doc, self._moved_code), (self._pending_doc, None)):
            at = np.minimum(np.searchsorted(known, ids[rest]), max(len(known) - 1, 0))
            hit = known[at] == ids[rest] if len(known) else np.zeros(len(rest), dtype=bool)
            out[ok[rest[hit]]] = PENDING if code is None else code[at[hit]]
            rest = lost = rest[~hit]
        if len(lost):
            raise ValueError(f"{len(lost):,} document ids are no longer tracked (e.g. "
                             f"{int(ids[lost[0]])}); use remember_all=True to keep them all")
        return out

    def finish(self) -> None:
        """Prompts still waiting for a second instance are free-form text."""
        self.dropped = self._pending_doc.copy()
        self._moved_doc = self._moved_code = np.zeros(0, dtype=np.int64)
        self._set(self._pending_doc, FREE_FORM)
        self._clear_pending()

    # -- internals -------------------------------------------------------------------------

    def _clear_pending(self) -> None:
        self._pending_doc = np.zeros(0, dtype=np.int64)
        # Pending signatures stay in place in a slab (row per pending prompt in
        # ``_pending_row``), so a chunk appends its waiting prompts instead of copying the
        # whole pool; the slab is compacted when full.
        self._slab = np.zeros((0, self.params.num_perm), dtype=np.uint32)
        self._slab_used = 0
        self._pending_row = np.zeros(0, dtype=np.int64)
        self._pending_weight = np.zeros(0, dtype=np.int64)
        self._pending_words = np.zeros(0, dtype=np.int64)
        self._pending_bands = _SortedBands(self.params.bands)

    def _set(self, docs: np.ndarray, code: np.ndarray | int) -> None:
        """Record documents' codes: the last chunk's in place, older (pending) ones as moved."""
        codes = np.broadcast_to(np.asarray(code, dtype=np.int64), docs.shape)
        if self._doc_template is not None:
            self._doc_template[docs] = codes
        old = docs < self._chunk_first
        self._chunk_codes[docs[~old] - self._chunk_first] = codes[~old]
        if old.any():
            moved_doc = np.r_[self._moved_doc, docs[old]]
            moved_code = np.r_[self._moved_code, codes[old]]
            order = np.argsort(moved_doc, kind="stable")
            self._moved_doc, self._moved_code = moved_doc[order], moved_code[order]

    def _grow(self, size: int) -> None:
        assert self._doc_template is not None
        if size > len(self._doc_template):
            grown = np.full(max(size, 2 * len(self._doc_template), 1024), PENDING, np.int64)
            grown[: len(self._doc_template)] = self._doc_template
            self._doc_template = grown

    def _cluster(self, docs: np.ndarray, ready: PreparedTexts) -> None:
        p = self.params
        n_pend = len(self._pending_doc)
        # Pending prompts first: the older instance names a template formed with a new one.
        node_doc = np.r_[self._pending_doc, docs]
        node_weight = np.r_[self._pending_weight, ready.weight]
        node_words = np.r_[self._pending_words, ready.n_words]
        n_nodes = len(node_doc)
        n_tpl = len(self.index)
        slab, pending_row, sig = self._slab, self._pending_row, ready.sig

        def sig_of(nodes: np.ndarray) -> np.ndarray:
            old = nodes < n_pend
            if old.all():
                return slab.take(pending_row[nodes], axis=0)
            out = np.empty((len(nodes), p.num_perm), dtype=np.uint32)
            out[old] = slab.take(pending_row[nodes[old]], axis=0)
            out[~old] = sig.take(nodes[~old] - n_pend, axis=0)
            return out

        # Candidate pairs among the chunk's prompts (and the pending ones): star per bucket,
        # headed by the bucket's lowest node.
        merged = [self._pending_bands.merged(band, ready.keys[:, band],
                                             ready.key_order[:, band])
                  for band in range(p.bands)]
        # A template's instances share their head in most bands: a pair already proposed
        # by the first or the previous band a node was a member in is dropped before the
        # (costlier) deduplication of all pairs, which leaves the same set of pairs.
        pairs_u, pairs_v = [], []
        first_head = np.full(n_nodes, -1, dtype=np.int64)
        last_head = np.full(n_nodes, -1, dtype=np.int64)
        for sorted_keys, order in merged:
            new_group = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
            head = order[np.maximum.accumulate(np.where(new_group, np.arange(n_nodes), 0))]
            member = ~new_group
            hu, hv = head[member], order[member]
            fresh = (first_head[hv] != hu) & (last_head[hv] != hu)
            hu, hv = hu[fresh], hv[fresh]
            first_head[hv[first_head[hv] < 0]] = hu[first_head[hv] < 0]
            last_head[hv] = hu
            pairs_u.append(hu)
            pairs_v.append(hv)
        u = np.concatenate(pairs_u)
        v = np.concatenate(pairs_v)
        if len(u):
            pair = _sorted_distinct(np.minimum(u, v) * n_nodes + np.maximum(u, v))
            u, v = pair // n_nodes, pair % n_nodes
            short = np.minimum(node_words[u], node_words[v]) < p.short_words
            ok = _similar(sig_of(u), sig_of(v), p.threshold, short)
            u, v = u[ok], v[ok]

        # Candidate (prompt, known template) pairs: the first representative sharing a band key.
        du, tv_ = self._template_candidates(ready.keys, ready.key_order, n_pend)
        if len(du):
            n_reps = len(self.index.signatures)
            pair = _sorted_distinct(du * n_reps + tv_)
            du, rv = pair // n_reps, pair % n_reps
            short = np.minimum(node_words[du], self.index.rep_words[rv]) < p.short_words
            ok = _similar(sig_of(du), self.index.signatures[rv], p.threshold, short)
            du, tv_ = du[ok], self.index.rep_template[rv[ok]]

        # Components over prompts + templates (template t is node n_nodes + t).
        total = n_nodes + n_tpl
        rows = np.r_[u, du]
        cols = np.r_[v, n_nodes + tv_]
        graph = sparse.coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(total, total))
        _, comp = connected_components(graph, directed=False)
        node_comp = comp[:n_nodes]
        # The oldest template of a component names it (joins of two old templates keep both
        # ids in the index; new traffic goes to the older one).
        tpl_of_comp = np.full(comp.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
        if n_tpl:
            np.minimum.at(tpl_of_comp, comp[n_nodes:], np.arange(n_tpl))
        assigned = tpl_of_comp[node_comp]
        comp_weight = np.bincount(node_comp, weights=node_weight, minlength=len(tpl_of_comp))
        has_tpl = assigned != np.iinfo(np.int64).max

        # New templates: components without one that reached min_requests.
        forming = ~has_tpl & (comp_weight[node_comp] >= p.min_requests)
        new_comps = _sorted_distinct(node_comp[forming])
        if len(new_comps):
            # First new prompt of each component (in chunk order) names it and feeds the rules.
            is_new = np.arange(n_nodes) >= n_pend
            cand = np.flatnonzero(forming & is_new)
            first_idx = cand[np.unique(node_comp[cand], return_index=True)[1]]
            comps_named = node_comp[first_idx]
            position = ready.live[first_idx - n_pend]
            texts = normalise(ready.unique.take(pa.array(position))).to_pylist()
            codes = np.arange(n_tpl, n_tpl + len(first_idx))
            tpl_of_comp[comps_named] = codes
            self._new_templates(texts)
            assigned = tpl_of_comp[node_comp]
            has_tpl = assigned != np.iinfo(np.int64).max
        self.index.templates["requests"] += np.bincount(
            assigned[has_tpl], weights=node_weight[has_tpl], minlength=len(self.index)
        ).astype(np.int64)

        # Record assignments; pending prompts that found a template are "resolved".
        self._set(node_doc[has_tpl], assigned[has_tpl])
        was_pending = np.arange(n_nodes) < n_pend
        self.resolved = node_doc[has_tpl & was_pending]
        self._reps_checked = len(self.index.signatures)
        self._add_representatives(sig_of, node_words, assigned, has_tpl)

        # The rest waits; beyond max_pending the oldest become free-form.
        keep = ~has_tpl
        waiting = np.flatnonzero(keep)
        excess = len(waiting) - p.max_pending
        if excess > 0:
            self.dropped = node_doc[waiting[:excess]]
            self._set(self.dropped, FREE_FORM)
            keep[waiting[:excess]] = False
            waiting = waiting[excess:]
        self._pending_doc = node_doc[waiting]
        self._keep_signatures(waiting, n_pend, sig)
        self._pending_weight = node_weight[waiting]
        self._pending_words = node_words[waiting]
        self._pending_bands.set_kept(merged, keep)

    def _keep_signatures(self, waiting: np.ndarray, n_pend: int, sig: np.ndarray) -> None:
        """Slab rows of the prompts still waiting: old ones keep theirs, new ones append."""
        old = waiting[waiting < n_pend]
        new = waiting[waiting >= n_pend] - n_pend
        rows = self._pending_row[old]
        if self._slab_used + len(new) > len(self._slab):
            size = max(2 * (len(rows) + len(new)), 1024)
            slab = np.empty((size, self.params.num_perm), dtype=np.uint32)
            slab[: len(rows)] = self._slab.take(rows, axis=0)
            self._slab, self._slab_used, rows = slab, len(rows), np.arange(len(rows))
        start = self._slab_used
        self._slab[start : start + len(new)] = sig.take(new, axis=0)
        self._slab_used += len(new)
        self._pending_row = np.r_[rows, np.arange(start, start + len(new))]

    def _template_candidates(self, keys: np.ndarray, key_order: np.ndarray,
                             n_pend: int) -> tuple[np.ndarray, np.ndarray]:
        """(node, representative) pairs to check: per band, the first representative (in
        index order) with the node's key.

        New prompts (nodes ``n_pend`` on, band ``keys``) look up every representative.
        Pending prompts already met every representative up to ``_reps_checked`` and the
        first representative of a key never changes, so only keys whose first
        representative is newer can give them a candidate.
        """
        n_reps = len(self.index.signatures)
        nodes, reps = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        if not n_reps:
            return nodes[0], reps[0]
        index = self.index.band_index()
        pending = self._pending_bands
        for band in range(self.params.bands):
            rep_keys, rep_order = index.keys[band], index.items[band]
            # Looked up in key order: sorted needles walk the sorted keys once.
            order = key_order[:, band]
            wanted = keys[order, band]
            at = np.minimum(np.searchsorted(rep_keys, wanted), n_reps - 1)
            hit = np.flatnonzero(rep_keys[at] == wanted)
            nodes.append(n_pend + order[hit].astype(np.int64))
            reps.append(rep_order[at[hit]])
            if not n_pend or self._reps_checked == n_reps:
                continue
            first = np.r_[True, rep_keys[1:] != rep_keys[:-1]]
            fresh = np.flatnonzero(first & (rep_order >= self._reps_checked))
            lo = np.searchsorted(pending.keys[band], rep_keys[fresh], side="left")
            count = np.searchsorted(pending.keys[band], rep_keys[fresh], side="right") - lo
            offsets = np.cumsum(count) - count
            slot = np.repeat(lo - offsets, count) + np.arange(int(count.sum()))
            nodes.append(pending.items[band][slot])
            reps.append(np.repeat(rep_order[fresh], count))
        return np.concatenate(nodes), np.concatenate(reps)

    def _new_templates(self, texts: list[str]) -> None:
        salt = self.params.salt.encode()
        rows = []
        for text in texts:
            rule = classify(text)
            digest = hashlib.blake2b(text.encode(), digest_size=8, key=salt[:64]).hexdigest()
            rows.append({
                "fingerprint": f"pf_{digest}",
                "category": rule.category,
                "category_rule": rule.category_rule,
                "elicits_reasoning": rule.elicits_reasoning,
                "reasoning_rules": ";".join(rule.reasoning_rules),
                "template_tokens": len(text.split()),
                "requests": 0,
            })
        added = pd.DataFrame(rows, columns=list(TemplateIndex.COLUMNS))
        frame = pd.concat([self.index.templates, added], ignore_index=True)
        frame["requests"] = frame["requests"].astype("int64")
        frame["template_tokens"] = frame["template_tokens"].astype("int64")
        frame["elicits_reasoning"] = frame["elicits_reasoning"].astype(bool)
        self.index.templates = frame
        self._reps = np.r_[self._reps, np.zeros(len(rows), np.int64)]

    def _add_representatives(
        self, sig_of: Callable[[np.ndarray], np.ndarray], node_words: np.ndarray,
        assigned: np.ndarray, has_tpl: np.ndarray,
    ) -> None:
        idx = np.flatnonzero(has_tpl)
        if not len(idx):
            return
        tpl = assigned[idx]
        order = np.argsort(tpl, kind="stable")
        idx, tpl = idx[order], tpl[order]
        rank = np.arange(len(tpl)) - np.searchsorted(tpl, tpl, side="left")
        room = self.params.reps_per_template - self._reps[tpl]
        take = rank < room
        if take.any():
            self.index.add_representatives(sig_of(idx[take]), tpl[take],
                                           node_words[idx[take]])
            self._reps += np.bincount(tpl[take], minlength=len(self._reps))


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort: numpy 2.4's hash-based ``unique`` took 50-100x
    longer on the hundreds of thousands of candidate pairs of a chunk."""
    out = np.sort(values)
    return out[np.r_[True, out[1:] != out[:-1]]] if len(out) else out


def _similar(a: np.ndarray, b: np.ndarray, threshold: float, exact: np.ndarray) -> np.ndarray:
    """Signature pairs (row-wise) with estimated Jaccard similarity at least ``threshold``,
    or equal where ``exact``."""
    out = np.zeros(len(a), dtype=bool)
    step = 200_000
    for i in range(0, len(a), step):
        share = (a[i : i + step] == b[i : i + step]).mean(axis=1)
        out[i : i + step] = np.where(exact[i : i + step], share == 1.0, share >= threshold)
    return out
