"""Settings: every stage's options from one TOML file, with environment overrides.

Each stage owns a frozen pydantic options dataclass (``LoadOptions`` here,
``ProjectionOptions``, ``DetectionOptions``, ``ScoringOptions``, ``LineageOptions`` in their
modules) that holds the only copy of its defaults and refuses out-of-range values; this
module only fills them.
A TOML file has one table per stage::

    [projection]
    hub_cap = 300
    kind_weights = { payment_method = 1.0, ip = 0.4, prompt_fingerprint = 0.5, device = 0.8 }

    [detection]
    resolution = 0.05

An environment variable ``GRAPHINV_<STAGE>__<KEY>`` (``__`` between the parts, nested
tables too) overrides the file, its value read as a TOML value when it parses as one
(``GRAPHINV_DETECTION__RESOLUTION=0.1``, ``GRAPHINV_PROJECTION__KIND_WEIGHTS__IP=0.3``).
Unknown stages or keys are errors, so a typo never silently keeps a default, and a value
out of range is a :class:`~graphinv.errors.ConfigError` naming stage, key and bound,
wherever it came from.

Examples
--------
>>> from graphinv.config import load_settings
>>> settings = load_settings(path=None, environ={"GRAPHINV_PROJECTION__HUB_CAP": "300"})
>>> settings.projection.hub_cap
300
>>> load_settings(path=None, environ={"GRAPHINV_SCORING__THRESHOLD": "7"})
Traceback (most recent call last):
...
graphinv.errors.ConfigError: scoring.threshold = 7: must be ≤ 1 (settings from environment)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic

from graphinv.detect.communities import DetectionOptions
from graphinv.detect.projection import ProjectionOptions
from graphinv.errors import ConfigError, invalid_settings, stage_options
from graphinv.lineage import LineageOptions
from graphinv.schema import KIND_PATTERN
from graphinv.score.scoring import ScoringOptions

DEFAULT_FILE = Path("graphinv.toml")
ENV_PREFIX = "GRAPHINV_"

_Kind = Annotated[str, pydantic.StringConstraints(pattern=f"^{KIND_PATTERN.pattern}$")]


@stage_options("load")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class LoadOptions:
    """What the loader accepts beyond the input contract's core.

    Parameters
    ----------
    extra_kinds : tuple of str
        Link kinds accepted beside ``payment_method``, ``ip`` and ``prompt_fingerprint``,
        each a lower-case word; rows of any other kind go to quarantine. A platform's new
        identifier (a device id, a referral code) is added here, not in code. Their
        weight in the projection is ``projection.kind_weights[kind]`` or
        ``projection.default_kind_weight``.

    Examples
    --------
    >>> LoadOptions(extra_kinds=("device", "Referral Code"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: load.extra_kinds.1 = 'Referral Code': must match ...
    """

    extra_kinds: tuple[_Kind, ...] = ("api_client", "device", "email", "referral")


_Price = Annotated[float, pydantic.Field(ge=0)]


@stage_options("case")
@pydantic.dataclasses.dataclass(frozen=True, config=pydantic.ConfigDict(extra="forbid"))
class CaseOptions:
    """What a case file adds to the store's data.

    Parameters
    ----------
    prices : mapping of model to (input, output) price
        List price in US dollars per million input and output tokens, per model name as
        it appears in ``usage.model``. Spend is not in the input contract, so a case file
        estimates it from tokens only for the models priced here and names the others.

    Examples
    --------
    >>> CaseOptions(prices={"frontier-large": (3.0, 15.0)}).prices["frontier-large"]
    (3.0, 15.0)
    >>> CaseOptions(prices={"frontier-large": (-1.0, 15.0)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    graphinv.errors.ConfigError: case.prices.frontier-large.0 = -1: must be ≥ 0
    """

    prices: dict[str, tuple[_Price, _Price]] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """The options of every stage, as used by one run."""

    load: LoadOptions = field(default_factory=LoadOptions)
    projection: ProjectionOptions = field(default_factory=ProjectionOptions)
    detection: DetectionOptions = field(default_factory=DetectionOptions)
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    lineage: LineageOptions = field(default_factory=LineageOptions)
    case: CaseOptions = field(default_factory=CaseOptions)
    source: str = "defaults"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (recorded with every sweep)."""
        return json.loads(json.dumps(_plain(self)))


def load_settings(
    *, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read settings from ``path`` (or ``GRAPHINV_CONFIG``, or ``./graphinv.toml`` when it
    exists), then apply ``GRAPHINV_<STAGE>__<KEY>`` overrides from ``environ``.

    Raises
    ------
    ConfigError
        The file is missing or not TOML, or names an unknown stage or key, or a value has
        the wrong type.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: list[str] = []
    path = path or (Path(environ["GRAPHINV_CONFIG"]) if environ.get("GRAPHINV_CONFIG") else None)
    if path is None and DEFAULT_FILE.is_file():
        path = DEFAULT_FILE
    if path is not None:
        try:
            values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as error:
            raise ConfigError(f"settings file {path} not found") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"settings file {path} is not valid TOML: {error}") from error
        sources.append(str(path))
    overrides = _env_overrides(environ)
    if overrides:
        _deep_merge(values, overrides)
        sources.append("environment")
    stages = {f.name: f.type for f in fields(Settings) if f.name != "source"}
    unknown = set(values) - set(stages)
    if unknown:
        raise ConfigError(
            f"unknown settings section(s) {sorted(unknown)}; known: {sorted(stages)}"
        )
    source = " + ".join(sources) or "defaults"
    built = {
        name: _build(_option_class(name), values.get(name, {}), where=name, source=source)
        for name in stages
    }
    return Settings(**built, source=source)


def _option_class(stage: str) -> type:
    return {
        "load": LoadOptions,
        "projection": ProjectionOptions,
        "detection": DetectionOptions,
        "scoring": ScoringOptions,
        "lineage": LineageOptions,
        "case": CaseOptions,
    }[stage]


def _build(cls: type, values: Mapping[str, Any], *, where: str, source: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table of settings, not {values!r}")
    _reject_unknown(cls, values, where)
    defaults = cls()
    # A table of per-kind weights extends the default table instead of replacing it, so
    # setting one kind's weight keeps the others (a weight of 0 turns a kind off).
    merged = {
        key: {**getattr(defaults, key), **value}
        if isinstance(value, Mapping) and isinstance(getattr(defaults, key), Mapping)
        else value
        for key, value in values.items()
    }
    try:
        return pydantic.TypeAdapter(cls).validate_python(merged)
    except pydantic.ValidationError as error:
        problem = invalid_settings(where, error.errors())
        raise ConfigError(f"{problem} (settings from {source})") from None


def _reject_unknown(cls: type, values: Mapping[str, Any], where: str) -> None:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown} in [{where}]; known: {sorted(known)}")
    defaults = cls()
    for name, value in values.items():
        default = getattr(defaults, name)
        if is_dataclass(default) and isinstance(value, Mapping):
            _reject_unknown(type(default), value, f"{where}.{name}")


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        target = overrides
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = _parse_value(raw)
    return overrides


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
