"""The exceptions graphinv raises: one base class, a few subclasses callers can act on."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class GraphinvError(Exception):
    """Base of every error graphinv raises on purpose; the CLI prints it as ``Error: …``."""


class ConfigError(GraphinvError):
    """A setting is missing, malformed or out of range."""


class InputError(GraphinvError):
    """An input file cannot be read at all (missing, wrong encoding, no header, empty).

    Row-level problems are not raised: those rows go to quarantine and the rest loads.
    """


class StoreError(GraphinvError):
    """The store (DuckDB file or Neo4j server) refused or failed an operation."""


class Neo4jUnavailable(StoreError):
    """No Neo4j server answers at the configured address."""


class LocalNeo4jError(GraphinvError):
    """The bundled local Neo4j server could not be installed, started or stopped."""


class RingNotFound(GraphinvError):
    """A ring id that the store does not hold."""


class MissingExtra(GraphinvError, ImportError):
    """An optional package (plots, notebooks) is not installed; the message names the extra."""


def invalid_settings(where: str, problems: Iterable[Mapping[str, Any]]) -> ConfigError:
    """A :class:`ConfigError` naming stage, key, value and bound of every problem.

    ``problems`` are pydantic's error records (``ValidationError.errors()``): ``loc`` is the
    key path inside the stage ``where``, ``type`` and ``ctx`` say which rule failed.

    Examples
    --------
    >>> problem = {"loc": ("threshold",), "input": 7, "type": "less_than_equal",
    ...            "ctx": {"le": 1.0}, "msg": "Input should be less than or equal to 1"}
    >>> print(invalid_settings("scoring", [problem]))
    scoring.threshold = 7: must be ≤ 1
    """
    return ConfigError("; ".join(_describe(where, problem) for problem in problems))


def stage_options(stage: str) -> Callable[[type[T]], type[T]]:
    """Make a pydantic options dataclass refuse bad values with a :class:`ConfigError`.

    Put it above ``@pydantic.dataclasses.dataclass(…)``: a call such as
    ``ScoringOptions(threshold=7)`` then raises ``ConfigError("scoring.threshold = 7: must
    be ≤ 1")`` instead of pydantic's ``ValidationError``, the same message a TOML file or an
    environment variable gets from :func:`graphinv.config.load_settings`.
    """

    def wrap(cls: type[T]) -> type[T]:
        # pydantic is imported by every options module anyway; importing it here keeps
        # `graphinv.errors` cheap for the command line's start-up.
        import pydantic

        validated_init = cls.__init__

        @functools.wraps(validated_init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except pydantic.ValidationError as error:
                raise invalid_settings(stage, error.errors()) from None

        setattr(cls, "__init__", __init__)  # noqa: B010 (mypy refuses assigning a method)
        return cls

    return wrap


_RULES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be ≥ {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be ≤ {le}",
    "too_short": "must have at least {min_length} item(s)",
    "string_pattern_mismatch": "must match {pattern}",
    "literal_error": "must be {expected}",
    "finite_number": "must be a finite number",
    "unexpected_keyword_argument": "unknown setting",
    "extra_forbidden": "unknown setting",
}


def _describe(where: str, problem: Mapping[str, Any]) -> str:
    key = ".".join([where, *(str(part) for part in problem.get("loc", ()))])
    bounds = {name: f"{value:g}" if isinstance(value, float) else value
              for name, value in (problem.get("ctx") or {}).items()}
    rule = _RULES.get(problem.get("type", ""))
    reason = (rule.format(**bounds) if rule is not None
              else str(problem.get("msg", "invalid")).removeprefix("Value error, "))
    value = problem.get("input")
    if problem.get("type") in ("unexpected_keyword_argument", "extra_forbidden") or isinstance(
            value, Mapping | list | tuple | set | frozenset):
        # A whole table or list would drown the message; the key and reason locate it.
        return f"{key}: {reason}"
    return f"{key} = {_shown(value)}: {reason}"


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)
