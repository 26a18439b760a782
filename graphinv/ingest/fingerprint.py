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
    out = texts
    if pc.any(pc.match_substring(out, "```")).as_py():
        out = pc.replace_substring_regex(out, _CODE, " qcode ")
    out = pc.replace_substring_regex(out, _QUOTED, " qstr ")
    if isinstance(out, pa.ChunkedArray):
        out = out.combine_chunks()
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
    """splitmix64 finaliser: spreads every input bit over the output (uint64, wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


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
    n, k = sig.shape
    empty_value = np.iinfo(np.uint32).max
    columns = np.ascontiguousarray(sig.T)
    out = columns.copy()
    carry = np.full(n, empty_value, dtype=np.uint32)
    distance = np.zeros(n, dtype=np.uint32)
    step = np.uint32(0x9E3779B1)
    with np.errstate(over="ignore"):
        for position in range(2 * k - 1, -1, -1):
            j = position % k
            column = columns[j]
            has = column != empty_value
            carry = np.where(has, column, carry)
            distance = np.where(has, 0, distance + 1).astype(np.uint32)
            if position < k:
                out[j] = np.where(has, column, carry + distance * step)
    out = np.ascontiguousarray(out.T)
    out[~has_words] = empty_value
    return out


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
    _band_index: list[tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

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

    def band_index(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per band: representatives' keys sorted, and which representative each is."""
        if self._band_index is None:
            keys = band_keys(self.signatures, self.params)
            self._band_index = []
            for band in range(self.params.bands):
                order = np.argsort(keys[:, band], kind="stable")
                self._band_index.append((keys[order, band], order))
        return self._band_index

    def add_representatives(self, sig: np.ndarray, template: np.ndarray,
                            words: np.ndarray) -> None:
        if len(sig):
            self.signatures = np.concatenate([self.signatures, sig])
            self.rep_template = np.concatenate([self.rep_template, template])
            self.rep_words = np.concatenate([self.rep_words, words])
            self._band_index = None


# -- clustering ------------------------------------------------------------------------------


class TemplateClusterer:
    """Assigns prompts to templates chunk by chunk, against and into a :class:`TemplateIndex`.

    :meth:`add` returns a document id per prompt (identical normalised prompts of one chunk
    share one); :meth:`cluster_of` maps document ids to template codes (row of
    ``index.templates``), :data:`PENDING` while a prompt waits for a second instance,
    :data:`FREE_FORM` once :meth:`finish` gave up on it, :data:`EMPTY` for prompts without
    a word. ``resolved`` lists documents that left the pending pool for a template in the
    last call, so a caller can attribute their earlier requests.
    """

    def __init__(self, index: TemplateIndex) -> None:
        self.index = index
        self.params = index.params
        self._doc_template = np.zeros(0, dtype=np.int64)
        self._n_docs = 0
        k = self.params.num_perm
        self._pending_doc = np.zeros(0, dtype=np.int64)
        self._pending_sig = np.zeros((0, k), dtype=np.uint32)
        self._pending_weight = np.zeros(0, dtype=np.int64)
        self._pending_words = np.zeros(0, dtype=np.int64)
        self._reps = np.bincount(index.rep_template, minlength=len(index)).astype(np.int64)
        self.resolved = np.zeros(0, dtype=np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)

    # -- public ----------------------------------------------------------------------------

    def add(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Fingerprint one chunk of prompts (null: no prompt); return their document ids."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        n = len(texts)
        doc_of_request = np.full(n, -1, dtype=np.int64)
        self.resolved = np.zeros(0, dtype=np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)
        present = np.flatnonzero(~np.asarray(texts.is_null().to_numpy(zero_copy_only=False)))
        if len(present) == 0:
            return doc_of_request
        norm = mask(texts.take(pa.array(present)))
        encoded = pc.dictionary_encode(norm)
        unique = encoded.dictionary
        inverse = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        weight = np.bincount(inverse, minlength=len(unique)).astype(np.int64)
        first = self._n_docs
        doc_of_request[present] = first + inverse
        self._grow(first + len(unique))
        self._n_docs += len(unique)

        sig, n_words = minhash(unique, self.params)
        empty = n_words == 0
        self._doc_template[first + np.flatnonzero(empty)] = EMPTY
        live = np.flatnonzero(~empty)
        self._cluster(first + live, sig[live], weight[live], n_words[live], unique, live)
        return doc_of_request

    def cluster_of(self, doc_ids: np.ndarray) -> np.ndarray:
        """Template code per document id (negative codes: see the class docstring)."""
        out = np.full(len(doc_ids), EMPTY, dtype=np.int64)
        ok = doc_ids >= 0
        out[ok] = self._doc_template[doc_ids[ok]]
        return out

    def finish(self) -> None:
        """Prompts still waiting for a second instance are free-form text."""
        self.dropped = self._pending_doc.copy()
        self._doc_template[self._pending_doc] = FREE_FORM
        k = self.params.num_perm
        self._pending_doc = np.zeros(0, dtype=np.int64)
        self._pending_sig = np.zeros((0, k), dtype=np.uint32)
        self._pending_weight = np.zeros(0, dtype=np.int64)
        self._pending_words = np.zeros(0, dtype=np.int64)

    # -- internals -------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        if size > len(self._doc_template):
            grown = np.full(max(size, 2 * len(self._doc_template), 1024), PENDING, np.int64)
            grown[: len(self._doc_template)] = self._doc_template
            self._doc_template = grown

    def _cluster(
        self,
        docs: np.ndarray,
        sig: np.ndarray,
        weight: np.ndarray,
        n_words: np.ndarray,
        unique: pa.Array,
        position: np.ndarray,
    ) -> None:
        p = self.params
        n_pend = len(self._pending_doc)
        # Pending prompts first: the older instance names a template formed with a new one.
        node_doc = np.r_[self._pending_doc, docs]
        node_sig = np.concatenate([self._pending_sig, sig])
        node_weight = np.r_[self._pending_weight, weight]
        node_words = np.r_[self._pending_words, n_words]
        n_nodes = len(node_doc)
        n_tpl = len(self.index)
        keys = band_keys(node_sig, p)

        # Candidate pairs among the chunk's prompts (and the pending ones): star per bucket.
        pairs_u, pairs_v = [], []
        for band in range(p.bands):
            order = np.argsort(keys[:, band], kind="stable")
            sorted_keys = keys[order, band]
            new_group = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
            head = order[np.maximum.accumulate(np.where(new_group, np.arange(n_nodes), 0))]
            member = ~new_group
            pairs_u.append(head[member])
            pairs_v.append(order[member])
        u = np.concatenate(pairs_u)
        v = np.concatenate(pairs_v)
        if len(u):
            pair = np.unique(np.minimum(u, v) * n_nodes + np.maximum(u, v))
            u, v = pair // n_nodes, pair % n_nodes
            short = np.minimum(node_words[u], node_words[v]) < p.short_words
            ok = _similar(node_sig[u], node_sig[v], p.threshold, short)
            u, v = u[ok], v[ok]

        # Candidate (prompt, known template) pairs through the representatives' band keys.
        tu, tv = [], []
        if len(self.index.signatures):
            for band, (rep_keys, rep_order) in enumerate(self.index.band_index()):
                at = np.searchsorted(rep_keys, keys[:, band])
                at = np.minimum(at, len(rep_keys) - 1)
                hit = np.flatnonzero(rep_keys[at] == keys[:, band])
                tu.append(hit)
                tv.append(rep_order[at[hit]])
        if tu and sum(len(x) for x in tu):
            du, rv = np.concatenate(tu), np.concatenate(tv)
            pair = np.unique(du * len(self.index.signatures) + rv)
            du, rv = pair // len(self.index.signatures), pair % len(self.index.signatures)
            short = np.minimum(node_words[du], self.index.rep_words[rv]) < p.short_words
            ok = _similar(node_sig[du], self.index.signatures[rv], p.threshold, short)
            du, tv_ = du[ok], self.index.rep_template[rv[ok]]
        else:
            du = tv_ = np.zeros(0, dtype=np.int64)

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
        new_comps = np.unique(node_comp[forming])
        if len(new_comps):
            # First new prompt of each component (in chunk order) names it and feeds the rules.
            is_new = np.arange(n_nodes) >= n_pend
            cand = np.flatnonzero(forming & is_new)
            first_idx = cand[np.unique(node_comp[cand], return_index=True)[1]]
            comps_named = node_comp[first_idx]
            texts = normalise(unique.take(pa.array(position[first_idx - n_pend]))).to_pylist()
            codes = np.arange(n_tpl, n_tpl + len(first_idx))
            tpl_of_comp[comps_named] = codes
            self._new_templates(texts)
            assigned = tpl_of_comp[node_comp]
            has_tpl = assigned != np.iinfo(np.int64).max
        self.index.templates["requests"] += np.bincount(
            assigned[has_tpl], weights=node_weight[has_tpl], minlength=len(self.index)
        ).astype(np.int64)

        # Record assignments; pending prompts that found a template are "resolved".
        self._doc_template[node_doc[has_tpl]] = assigned[has_tpl]
        was_pending = np.arange(n_nodes) < n_pend
        self.resolved = node_doc[has_tpl & was_pending]
        self._add_representatives(node_sig, node_words, assigned, has_tpl)

        waiting = ~has_tpl
        self._pending_doc = node_doc[waiting]
        self._pending_sig = node_sig[waiting]
        self._pending_weight = node_weight[waiting]
        self._pending_words = node_words[waiting]
        excess = len(self._pending_doc) - p.max_pending
        if excess > 0:
            self.dropped = self._pending_doc[:excess].copy()
            self._doc_template[self.dropped] = FREE_FORM
            self._pending_doc = self._pending_doc[excess:]
            self._pending_sig = self._pending_sig[excess:]
            self._pending_weight = self._pending_weight[excess:]
            self._pending_words = self._pending_words[excess:]

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
        self, node_sig: np.ndarray, node_words: np.ndarray, assigned: np.ndarray,
        has_tpl: np.ndarray,
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
            self.index.add_representatives(node_sig[idx[take]], tpl[take],
                                           node_words[idx[take]])
            self._reps += np.bincount(tpl[take], minlength=len(self._reps))


def _similar(a: np.ndarray, b: np.ndarray, threshold: float, exact: np.ndarray) -> np.ndarray:
    """Signature pairs (row-wise) with estimated Jaccard similarity at least ``threshold``,
    or equal where ``exact``."""
    out = np.zeros(len(a), dtype=bool)
    step = 200_000
    for i in range(0, len(a), step):
        share = (a[i : i + step] == b[i : i + step]).mean(axis=1)
        out[i : i + step] = np.where(exact[i : i + step], share == 1.0, share >= threshold)
    return out
