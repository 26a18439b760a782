"""The Spark engine gives the single-machine sweep's rings (medium preset, one seed).

One local Spark run (``local[2]``) through :func:`graphinv.sweep.run_sweep`, compared with
whatever :mod:`graphinv.detect` currently does on the platform the store returns: the
projection bit for bit, then members, ring table, campaigns and detection counts.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from graphinv.cli import cli
from graphinv.config import Settings
from graphinv.detect.communities import detect_rings
from graphinv.detect.projection import project
from graphinv.errors import InputError, MissingExtra
from graphinv.score.features import FEATURES, ring_features
from graphinv.score.registry import RingFeatures
from graphinv.score.scoring import score_rings
from graphinv.stores import open_store
from graphinv.sweep import run_sweep
from graphinv.synth import generate, write_platform

SEED = 5
# The Spark run takes 1–3 minutes on two idle cores and up to 16 on two cores shared by
# a load average of 25 (docs/scale.md); the fixture's time counts against the first test.
pytestmark = [
    pytest.mark.timeout(2700),
    # pyspark 4.3 still passes copy= to pandas 3's astype; nothing of graphinv's.
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    # Not skipped without pyspark: `make test` installs graphinv[spark], so its absence
    # is a failure to see.
    import pyspark  # noqa: F401

    from graphinv.engines.spark import SparkDetector, SparkOptions

    root = tmp_path_factory.mktemp("spark")
    folder = root / "input"
    write_platform(generate(preset="medium", seed=SEED), folder)
    loaded = CliRunner().invoke(cli, ["--db", str(root / "g.duckdb"), "load", str(folder)])
    assert loaded.exit_code == 0, loaded.output
    store = open_store(path=root / "g.duckdb", use_env=False)
    platform = store.read_platform()
    settings = Settings()
    projection = project(platform, options=settings.projection)
    detection = detect_rings(projection, platform=platform, options=settings.detection)
    # Small thresholds send the largest components down the driver path and the
    # component labelling through its partition rounds, so both are compared too.
    detector = SparkDetector(
        folder,
        options=SparkOptions(
            giant_component_edges=20_000, single_task_edges=100_000, shuffle_partitions=2
        ),
    )
    measured: list[RingFeatures] = []

    def measure(members, platform, *, options):
        measured.append(detector.features(members, platform, options=options))
        return measured[-1]

    report = run_sweep(store, settings=settings, progress=False, detector=detector,
                       measure=measure)
    stored = store.read_members()
    store.close()
    local = ring_features(detection.members, platform, options=settings.scoring.features)
    features = {"local": local, "spark": measured[0], "platform": platform}
    return projection, detection, detector.last, report, stored, features


def _assert_same_projection(projection, other) -> None:
    assert np.array_equal(projection.account_ids, other.account_ids)
    assert projection.stats == other.stats
    for name in ("weights", "ring_evidence"):
        mine, theirs = getattr(projection, name), getattr(other, name)
        assert mine.nnz == theirs.nnz > 0, name
        assert (mine != theirs).nnz == 0, f"{name}: {abs(mine - theirs).max()} apart at most"
    held = np.asarray(projection.ring_identifiers.sum(axis=1)).ravel()
    assert np.array_equal(held, np.asarray(other.ring_identifiers.sum(axis=1)).ravel())
    shared = projection.ring_identifiers @ projection.ring_identifiers.T
    assert (shared != other.ring_identifiers @ other.ring_identifiers.T).nnz == 0


@pytest.mark.spark
def test_projection_is_bit_identical(compared):
    projection, _, spark, _, _, _ = compared
    _assert_same_projection(projection, spark.projection)


@pytest.mark.spark
def test_a_hub_most_of_the_platform_holds_gives_no_tokens_on_spark_either(tmp_path: Path):
    # Request logs give a stock system prompt that most accounts send; the medium preset
    # above has no such hub. Here 70 % of a small platform send one, first on one of 20
    # days: its co-activity tokens (and sign-up bursts) would link accounts that merely
    # started on the same day, unless the hub is left out as projection.project does.
    from graphinv.engines.spark import SparkOptions, detect_on_spark, spark_session

    platform = generate(preset="small", seed=SEED, n_accounts=1500)
    rng = np.random.default_rng(SEED)
    senders = platform.accounts["account_id"].sample(frac=0.7, random_state=SEED)
    first = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 20, len(senders)), unit="D")
    stock = pd.DataFrame({"account_id": senders.to_numpy(), "kind": "prompt_fingerprint",
                          "value": "pf_stock_system_prompt", "first_seen": first,
                          "last_seen": first + pd.Timedelta(days=30), "count": 10})
    stock["first_seen"] = stock["first_seen"].astype(platform.links["first_seen"].dtype)
    stock["last_seen"] = stock["last_seen"].astype(platform.links["last_seen"].dtype)
    links = pd.concat([platform.links, stock], ignore_index=True)
    folder = tmp_path / "input"
    write_platform(dataclasses.replace(platform, links=links), folder)
    loaded = CliRunner().invoke(cli, ["--db", str(tmp_path / "g.duckdb"), "load", str(folder)])
    assert loaded.exit_code == 0, loaded.output
    store = open_store(path=tmp_path / "g.duckdb", use_env=False)
    platform = store.read_platform()
    store.close()
    settings = Settings()
    projection = project(platform, options=settings.projection)
    # The hub's tokens would change the projection: what the comparison below checks is
    # that Spark leaves them out too.
    with_hub = project(platform, options=dataclasses.replace(settings.projection,
                                                             hub_max_share=1.0))
    assert (projection.weights != with_hub.weights).nnz > 0
    spark = spark_session(SparkOptions(shuffle_partitions=2))
    found = detect_on_spark(folder, spark=spark, settings=settings)
    _assert_same_projection(projection, found.projection)


@pytest.mark.spark
def test_rings_are_identical(compared):
    _, detection, spark, _, _, _ = compared
    found = spark.detection
    assert len(detection.rings) > 50
    pd.testing.assert_frame_equal(found.members, detection.members)
    pd.testing.assert_frame_equal(found.rings, detection.rings)
    pd.testing.assert_frame_equal(found.campaigns, detection.campaigns)
    mine, theirs = detection.stats.to_dict(), found.stats.to_dict()
    mine.pop("seconds"), theirs.pop("seconds")
    assert mine == theirs
    assert spark.giant_components, "the driver path for giant components was not exercised"
    assert all(g["edges"] > 20_000 for g in spark.giant_components)


@pytest.mark.spark
def test_sweep_records_the_spark_rings(compared):
    _, detection, _, report, stored, _ = compared
    assert report.projection["engine"]["name"] == "spark"
    assert report.counts["rings"] == len(detection.rings)

    def groups(members: pd.DataFrame) -> set[frozenset[str]]:
        # Ring ids become stable ids in the store; the groups of accounts must not change.
        return {frozenset(g) for _, g in members.groupby("ring_id")["account_id"]}

    assert len(groups(stored)) == len(detection.rings)
    assert groups(stored) == groups(detection.members)
    assert report.rings["score"].notna().all()


@pytest.mark.spark
def test_features_and_scores_on_spark_equal_one_machine(compared):
    _, detection, _, _, _, features = compared
    local, spark = features["local"], features["spark"]
    assert list(spark.values.columns) == list(local.values.columns)
    assert spark.values.index.equals(local.values.index)
    measured = 0
    for column in local.values.columns:
        mine, theirs = local.values[column], spark.values[column]
        if not pd.api.types.is_numeric_dtype(mine):
            assert mine.astype(str).tolist() == theirs.astype(str).tolist(), column
            continue
        mine, theirs = mine.to_numpy(dtype=float), theirs.to_numpy(dtype=float)
        np.testing.assert_allclose(theirs, mine, rtol=1e-9, atol=1e-12, err_msg=column)
        measured += column in FEATURES and bool(np.isfinite(mine).any())
    # Every feature is measurable on the medium preset: a NaN-for-NaN match proves little.
    assert measured == len(FEATURES)
    for name in ("baseline", "reference"):
        mine, theirs = getattr(local, name), getattr(spark, name)
        assert sorted(mine.index) == sorted(theirs.index), name
        np.testing.assert_allclose(theirs[mine.index], mine, rtol=1e-9, err_msg=name)
    assert local.rate_limits.sort_index().to_dict() == pytest.approx(
        spark.rate_limits.sort_index().to_dict(), rel=1e-12)
    # The score of every ring, from either measurement.
    members, platform = detection.members, features["platform"]
    one = score_rings(members, platform).rings.set_index("ring_id")["score"]
    other = score_rings(members, platform, measure=lambda *_, **__: spark
                        ).rings.set_index("ring_id")["score"]
    np.testing.assert_allclose(other[one.index], one, rtol=1e-9, atol=1e-12)


def test_a_feature_without_a_spark_measurement_is_refused(monkeypatch):
    from graphinv.engines import spark_features
    from graphinv.errors import GraphinvError

    monkeypatch.delitem(spark_features.SPARK_MEASURES, "ip_rotation")
    with pytest.raises(GraphinvError, match="ip_rotation have no Spark measurement"):
        spark_features.spark_ring_features(pd.DataFrame(), "unused", spark=None)


def test_a_missing_pyspark_names_the_extra(monkeypatch):
    from graphinv.engines import spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(MissingExtra, match=r"graphinv\[spark\]"):
        spark.spark_session()


def test_spark_reads_parquet_only(tmp_path: Path):
    from graphinv.engines.spark import _read

    (tmp_path / "accounts.csv").write_text("account_id,created_at\n")
    with pytest.raises(InputError, match=r"accounts\.parquet: missing.*accounts\.csv"):
        _read(None, tmp_path)


def test_cli_engine_spark_needs_the_input_folder(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(tmp_path / "g.duckdb"), "sweep", "--engine", "spark"])
    assert result.exit_code != 0
    assert "--engine spark needs --input" in result.output
    result = runner.invoke(cli, ["--db", str(tmp_path / "g.duckdb"), "sweep", "--input", "x"])
    assert "--input is read by --engine spark only" in result.output
