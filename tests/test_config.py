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
