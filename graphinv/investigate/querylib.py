"""The investigator query library: saved Cypher queries, one YAML file each.

Each file in ``graphinv/queries/`` holds exactly the keys ``id`` (the file's name without
``.yaml``), ``name``, ``category``, ``description``, ``parameters`` and ``query``, as
BloodHound keeps its saved queries. A parameter has a ``name``, a ``type`` (``string``,
``integer``, ``float`` or ``boolean``), a ``description`` and, when it is optional, a
``default`` (``null`` is a valid default: "not given"). Every ``$name`` in the query must
be a declared parameter and every declared parameter must be used, so a value can only
ever reach Neo4j as a parameter, never pasted into the text.

Examples
--------
>>> queries = load_queries()
>>> queries["top-rings"].name
'Top rings'
>>> bind(queries["top-rings"], {"limit": "5"})
{'limit': 5, 'sweep_id': None}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from graphinv.errors import GraphinvError
from graphinv.stores.base import Store

QUERY_DIR = Path(__file__).parent / "queries"
CATEGORIES = ("rings", "scoring", "identifiers", "sweeps", "campaigns")
PARAMETER_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool}
_KEYS = ("id", "name", "category", "description", "parameters", "query")
_PARAMETER_KEYS = {"name", "type", "description", "default"}
_ID = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# `$name` in Cypher text; backquoted identifiers and strings hold no `$` in these queries.
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_MISSING = object()


class QueryError(GraphinvError):
    """A saved query file breaks the schema, or a query was called with bad parameters."""


@dataclass(frozen=True)
class QueryParameter:
    """One declared parameter; ``required`` when the file gives no ``default``."""

    name: str
    type: str
    description: str
    default: Any = None
    required: bool = True


@dataclass(frozen=True)
class SavedQuery:
    """One saved query as read from its YAML file."""

    id: str
    name: str
    category: str
    description: str
    parameters: tuple[QueryParameter, ...]
    query: str
    path: Path


def load_queries(*, folder: Path = QUERY_DIR) -> dict[str, SavedQuery]:
    """Read and validate every ``*.yaml`` query in ``folder``, keyed by id, sorted by
    category then id.

    Raises
    ------
    QueryError
        A file breaks the schema (the message names the file and the problem).
    """
    queries = [parse_query(path) for path in sorted(Path(folder).glob("*.yaml"))]
    queries.sort(key=lambda q: (CATEGORIES.index(q.category), q.id))
    return {q.id: q for q in queries}


def get_query(query_id: str, *, folder: Path = QUERY_DIR) -> SavedQuery:
    """The saved query with this id.

    Raises
    ------
    QueryError
        No such query (the message lists the known ids).
    """
    queries = load_queries(folder=folder)
    if query_id not in queries:
        raise QueryError(f"no saved query {query_id!r}; known: {', '.join(queries)}")
    return queries[query_id]


def parse_query(path: Path) -> SavedQuery:
    """One query file, checked against the schema of the module docstring."""
    def fail(problem: str) -> QueryError:
        return QueryError(f"{path.name}: {problem}")

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise fail(f"not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or set(data) != set(_KEYS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise fail(f"keys must be exactly {list(_KEYS)}, found {keys}")
    for key in ("id", "name", "category", "description", "query"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise fail(f"{key!r} must be non-empty text")
    if not _ID.fullmatch(data["id"]) or data["id"] != path.stem:
        raise fail(f"id {data['id']!r} must be kebab-case and equal the file name")
    if data["category"] not in CATEGORIES:
        raise fail(f"category {data['category']!r} is not one of {list(CATEGORIES)}")
    if not isinstance(data["parameters"], list):
        raise fail("'parameters' must be a list (empty when there are none)")
    parameters = tuple(_parameter(p, fail) for p in data["parameters"])
    declared = [p.name for p in parameters]
    if len(set(declared)) != len(declared):
        raise fail("a parameter is declared twice")
    used = set(_PLACEHOLDER.findall(data["query"]))
    if used != set(declared):
        raise fail(
            f"parameters used in the query {sorted(used)} differ from those declared "
            f"{sorted(declared)}"
        )
    return SavedQuery(
        id=data["id"],
        name=data["name"].strip(),
        category=data["category"],
        description=" ".join(data["description"].split()),
        parameters=parameters,
        query=data["query"].strip(),
        path=path,
    )


def _parameter(item: Any, fail: Any) -> QueryParameter:
    if not isinstance(item, dict) or not {"name", "type", "description"} <= set(item):
        raise fail(f"parameter {item!r} needs name, type and description")
    extra = sorted(set(item) - _PARAMETER_KEYS)
    if extra:
        raise fail(f"parameter {item['name']!r} has unknown keys {extra}")
    name, kind = item["name"], item["type"]
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise fail(f"parameter name {name!r} must be snake_case")
    if kind not in PARAMETER_TYPES:
        raise fail(f"parameter {name!r} has type {kind!r}, not one of {list(PARAMETER_TYPES)}")
    if not isinstance(item["description"], str) or not item["description"].strip():
        raise fail(f"parameter {name!r} needs a description")
    required = "default" not in item
    default = item.get("default")
    if default is not None and not _is_type(default, kind):
        raise fail(f"parameter {name!r}: default {default!r} is not a {kind}")
    return QueryParameter(name, kind, item["description"].strip(), default, required)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, PARAMETER_TYPES[kind])


def bind(query: SavedQuery, values: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for a run: given values (text from a command line is converted to the
    declared type), defaults for the rest.

    Raises
    ------
    QueryError
        An unknown parameter, a required one missing, or a value of the wrong type.

    Examples
    --------
    >>> q = load_queries()["ring-graph"]
    >>> bind(q, {"ring_id": "R-1", "min_shared": "3"})
    {'ring_id': 'R-1', 'min_shared': 3, 'max_identifiers': 40, 'max_accounts': 80}
    """
    known = {p.name: p for p in query.parameters}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise QueryError(f"{query.id}: unknown parameter(s) {unknown}; it takes {list(known)}")
    bound = {}
    for name, spec in known.items():
        value = values.get(name, _MISSING)
        if value is _MISSING:
            if spec.required:
                raise QueryError(f"{query.id}: parameter {name!r} is required ({spec.description})")
            bound[name] = spec.default
        else:
            bound[name] = _convert(query.id, spec, value)
    return bound


def _convert(query_id: str, spec: QueryParameter, value: Any) -> Any:
    if not isinstance(value, str) or spec.type == "string":
        if value is None or _is_type(value, spec.type):
            return value
        raise QueryError(f"{query_id}: {spec.name}={value!r} is not a {spec.type}")
    try:
        if spec.type == "boolean":
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(value)
            return lowered in ("true", "yes", "1")
        return PARAMETER_TYPES[spec.type](value)
    except ValueError as exc:
        raise QueryError(f"{query_id}: {spec.name}={value!r} is not a {spec.type}") from exc


def run_query(
    store: Store, query: SavedQuery | str, *, params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Run a saved query on a Neo4j store and return its rows.

    Parameters
    ----------
    store
        An open Neo4j store (saved queries are Cypher).
    query
        A :class:`SavedQuery` or its id.
    params
        Parameter values (text is converted to the declared types); defaults fill the rest.

    Raises
    ------
    QueryError
        The query is unknown, or a parameter is wrong.
    StoreError
        The store does not run Cypher (only the Neo4j store does), or refused the query.

    Examples
    --------
    With a running Neo4j server::

        from graphinv.stores import open_store
        store = open_store(neo4j_uri="bolt://127.0.0.1:7687")
        run_query(store, "top-rings", params={"limit": 3})
    """
    saved = get_query(query) if isinstance(query, str) else query
    return store.run_cypher(saved.query, bind(saved, params or {}))
