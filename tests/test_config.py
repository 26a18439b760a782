"""Settings: TOML file, environment overrides, and errors for typos."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphinv.config import Settings, load_settings
from graphinv.detect.projection import ProjectionOptions
from graphinv.errors import ConfigError


def test_defaults_without_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.source == "defaults"


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "graphinv.toml"
    path.write_text(
        "[projection]\nhub_cap = 300\nkind_weights = { device = 0.8 }\n"
        "[detection]\nresolution = 0.2\n"
    )
    settings = load_settings(
        path=path,
        environ={
            "GRAPHINV_DETECTION__RESOLUTION": "0.3",
            "GRAPHINV_PROJECTION__KIND_WEIGHTS__IP": "0.1",
            "GRAPHINV_NEO4J_HOME": "/not/a/setting",
        },
    )
    assert settings.projection.hub_cap == 300
    assert settings.detection.resolution == 0.3
    # Naming one kind keeps the default weights of the others.
    defaults = ProjectionOptions().kind_weights
    assert settings.projection.kind_weights["device"] == 0.8
    assert settings.projection.kind_weights["ip"] == 0.1
    assert settings.projection.kind_weights["payment_method"] == defaults["payment_method"]
    assert settings.source == f"{path} + environment"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[projection]\nhub_capp = 3\n", "unknown setting"),
        ("[detecton]\nresolution = 0.2\n", "unknown settings section"),
        ("[detection]\nresolution = 'high'\n", "detection.resolution"),
        ("[detection\n", "not valid TOML"),
    ],
)
def test_bad_settings_are_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path=path, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(path=tmp_path / "nope.toml", environ={})


def test_settings_serialise_for_the_sweep_record() -> None:
    plain = Settings().to_dict()
    assert plain["detection"]["resolution"] == Settings().detection.resolution
    assert isinstance(plain["projection"]["kind_weights"], dict)


def test_readme_settings_example_loads_and_shows_the_defaults(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    shown = load_settings(path=path, environ={}).to_dict()
    defaults = Settings().to_dict()
    shown.pop("source")
    defaults.pop("source")
    assert shown == defaults


# --- values out of range: one message, wherever the value came from ---------------------

# (stage table, key, value as TOML, message): every stage option class refuses these.
OUT_OF_RANGE = [
    ("scoring", "threshold", "7", r"scoring\.threshold = 7: must be ≤ 1"),
    ("scoring", "explain_top", "0", r"scoring\.explain_top = 0: must be ≥ 1"),
    ("scoring.weights", "reasoning_share", "-1",
     r"scoring\.weights\.reasoning_share = -1: must be ≥ 0"),
    ("scoring.weights", "reasoning_shares", "2",
     r"scoring\.weights: unknown feature\(s\) \['reasoning_shares'\]"),
    ("scoring.features", "near_limit_fraction", "1.5",
     r"scoring\.features\.near_limit_fraction = 1\.5: must be ≤ 1"),
    ("scoring.features", "rate_limit", "-60", r"scoring\.features\.rate_limit = -60: must be > 0"),
    ("lineage", "member_jaccard_min", "0", r"lineage\.member_jaccard_min = 0: must be > 0"),
    ("lineage", "growth_ratio", "0.8", r"lineage\.growth_ratio = 0\.8: must be > 1"),
    ("lineage", "min_shared_members", "0", r"lineage\.min_shared_members = 0: must be ≥ 1"),
    ("load", "extra_kinds", '["device", "Referral Code"]',
     r"load\.extra_kinds\.1 = 'Referral Code': must match"),
]
_IDS = [f"{table}.{key}={value}" for table, key, value, _ in OUT_OF_RANGE]


def _python_call(table: str, key: str, value: object) -> object:
    from graphinv.config import LoadOptions
    from graphinv.lineage import LineageOptions
    from graphinv.score.features import FeatureOptions
    from graphinv.score.scoring import ScoringOptions

    if table == "scoring.weights":
        return ScoringOptions(weights={key: value})
    cls = {"scoring": ScoringOptions, "scoring.features": FeatureOptions,
           "lineage": LineageOptions, "load": LoadOptions}[table]
    return cls(**{key: value})


@pytest.mark.parametrize(("table", "key", "value", "message"), OUT_OF_RANGE, ids=_IDS)
def test_bad_option_in_a_python_call_is_refused(table, key, value, message) -> None:
    import tomllib

    with pytest.raises(ConfigError, match=message):
        _python_call(table, key, tomllib.loads(f"v = {value}")["v"])


@pytest.mark.parametrize(("table", "key", "value", "message"), OUT_OF_RANGE, ids=_IDS)
def test_bad_option_in_a_toml_file_is_refused(tmp_path: Path, table, key, value, message
                                              ) -> None:
    path = tmp_path / "graphinv.toml"
    path.write_text(f"[{table}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings(path=path, environ={})
    assert str(path) in str(refused.value)


@pytest.mark.parametrize(("table", "key", "value", "message"), OUT_OF_RANGE, ids=_IDS)
def test_bad_option_in_an_environment_variable_is_refused(tmp_path, monkeypatch, table, key,
                                                          value, message) -> None:
    monkeypatch.chdir(tmp_path)
    name = "GRAPHINV_" + "__".join([*table.upper().split("."), key.upper()])
    with pytest.raises(ConfigError, match=message) as refused:
        load_settings(environ={name: value})
    assert "settings from environment" in str(refused.value)


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "graphinv.toml"
    path.write_text("[scoring]\nthreshold = -0.1\nexplain_top = 0\n")
    with pytest.raises(ConfigError, match=r"threshold = -0\.1: must be ≥ 0; "
                                          r"scoring\.explain_top = 0: must be ≥ 1"):
        load_settings(path=path, environ={})


def test_weights_table_keeps_the_defaults_it_does_not_name(tmp_path: Path) -> None:
    from graphinv.score.features import FEATURES

    path = tmp_path / "graphinv.toml"
    path.write_text("[scoring.weights]\nreasoning_share = 5.0\n")
    weights = load_settings(path=path, environ={}).scoring.weights
    assert weights == FEATURES.default_weights() | {"reasoning_share": 5.0}
    assert list(weights) == list(FEATURES.names())
