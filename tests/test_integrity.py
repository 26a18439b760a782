"""Integrity of both stores under crashes, concurrency and failing disks (issue 12, 7–9).

Crashes are real: a ``graphinv`` process (``tests/paused_cli.py``, the real command with a
pause point) is stopped with SIGKILL at a known step of its load. Concurrency is real too:
sweeps run as separate processes. Neo4j tests run against the real server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from graphinv.errors import StoreError
from graphinv.schema import TABLES
from graphinv.stores.base import LOAD_KEY, LockHolder, Store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j import cypher
from graphinv.stores.neo4j.store import Neo4jStore
from graphinv.sweep import run_sweep
from graphinv.synth import generate, next_day, write_platform

ROOT = Path(__file__).resolve().parent.parent
PAUSED_CLI = Path(__file__).resolve().parent / "paused_cli.py"
REFUSAL = "did not finish"


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two exports of one small platform, a day apart (the second merges into the first)."""
    root = tmp_path_factory.mktemp("days")
    first = generate(preset="small", seed=11, n_accounts=3_000)
    write_platform(first, root / "day0")
    write_platform(next_day(first, seed=12), root / "day1")
    return root / "day0", root / "day1"


def env(**extra: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if k != "NEO4J_URI"}
    values.update(PYTHONPATH=str(ROOT), **extra)
    return values


def graphinv(
    store_args: list[str], *args: str, pause: str | None = None, pause_seconds: float = 3600,
    lock_wait: float = 300, **popen: object,
) -> subprocess.Popen[str]:
    """Start the real command (with a pause point when ``pause`` names one)."""
    extra = {"GRAPHINV_LOCK_WAIT": str(lock_wait)}
    if pause:
        extra.update(GRAPHINV_TEST_PAUSE=pause, GRAPHINV_TEST_PAUSE_SECONDS=str(pause_seconds))
    return subprocess.Popen(
        [sys.executable, str(PAUSED_CLI), "--quiet", *store_args, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(**extra),
        cwd=ROOT, **popen,  # type: ignore[arg-type]
    )


def wait_paused(process: subprocess.Popen[str], timeout: float = 300) -> None:
    """Block until the process reaches its pause point (it prints PAUSED)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("PAUSED"):
            return
        if not line and process.poll() is not None:
            break
    process.kill()
    _, err = process.communicate()
    pytest.fail(f"the process ended or hung before its pause point: {err[-2000:]}")


def finished(process: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def platform_rows(store: Store) -> dict[str, pd.DataFrame]:
    return {
        name: frame.sort_values(list(TABLES[name].key)).reset_index(drop=True)
        for name, frame in store.read_platform(include_labels=True).tables().items()
    }


def ring_sets(store: Store) -> dict[str, frozenset[str]]:
    members = store.read_members()
    return {
        str(ring): frozenset(group["account_id"])
        for ring, group in members.groupby("ring_id")
    }


def same_rows(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


@pytest.fixture(scope="module")
def clean(days: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> EmbeddedStore:
    """Reference: day 0 then day 1 loaded cleanly into DuckDB by the command, then swept."""
    path = tmp_path_factory.mktemp("clean") / "g.duckdb"
    for day in days:
        code, _, err = finished(graphinv(["--db", str(path)], "load", str(day)))
        assert code == 0, err
    store = EmbeddedStore(path)
    run_sweep(store, progress=False)
    return store


# -- 7. loads: all or nothing on DuckDB, recorded and refused when unfinished ------------

EMBEDDED_KILL_POINTS = [
    # after the unfinished record is committed, before any row
    "graphinv.stores.embedded:EmbeddedStore._write_meta:1",
    # after 3 of the 7 tables (the audit's crash)
    "graphinv.stores.embedded:EmbeddedStore._merge:3",
    # every table merged, the finished record written, COMMIT not yet run
    "graphinv.stores.embedded:EmbeddedStore._put_meta:2",
]


# slow: four command-line runs in subprocesses, one killed at a pause point (~20 s each).
@pytest.mark.slow
@pytest.mark.parametrize("pause", EMBEDDED_KILL_POINTS, ids=["record", "3-tables", "commit"])
def test_killed_embedded_load_changes_nothing_and_is_refused_until_rerun(
    pause: str, days: tuple[Path, Path], clean: EmbeddedStore, tmp_path: Path
) -> None:
    day0, day1 = days
    db = tmp_path / "g.duckdb"
    code, _, err = finished(graphinv(["--db", str(db)], "load", str(day0)))
    assert code == 0, err
    with EmbeddedStore(db, read_only=True) as store:
        before = platform_rows(store)

    loading = graphinv(["--db", str(db)], "load", str(day1), pause=pause)
    wait_paused(loading)
    loading.send_signal(signal.SIGKILL)
    loading.wait()

    with EmbeddedStore(db) as store:
        # One transaction: the tables are exactly as before the killed load.
        same_rows(platform_rows(store), before)
        with pytest.raises(StoreError, match=REFUSAL) as refused:
            run_sweep(store, progress=False)
        assert f"graphinv load {day1}" in str(refused.value)
        assert "none of its rows were written" in str(refused.value)
    code, _, err = finished(graphinv(["--db", str(db)], "sweep"))
    assert code == 1 and REFUSAL in err and "sweeps refuse this store" in err

    code, _, err = finished(graphinv(["--db", str(db)], "load", str(day1)))
    assert code == 0, err
    with EmbeddedStore(db) as store:
        assert store.last_load() is not None and store.last_load().finished is not None
        same_rows(platform_rows(store), platform_rows(clean))
        run_sweep(store, progress=False)
        assert ring_sets(store) == ring_sets(clean)
        assert store.read_rings()["score"].tolist() == clean.read_rings()["score"].tolist()


def test_failed_load_is_recorded_unfinished_and_leaves_tables_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate(preset="small", seed=2, n_accounts=500)
    store = EmbeddedStore(tmp_path / "g.duckdb")
    store.load(first, progress=False, source="day0")
    before = platform_rows(store)
    merge = EmbeddedStore._merge
    merged: list[str] = []

    def failing(self: EmbeddedStore, spec: object, frame: pd.DataFrame) -> None:
        if len(merged) == 3:
            raise StoreError("disk gone after 3 tables")
        merge(self, spec, frame)  # type: ignore[arg-type]
        merged.append(spec.name)  # type: ignore[attr-defined]

    monkeypatch.setattr(EmbeddedStore, "_merge", failing)
    with pytest.raises(StoreError, match="after 3 tables"):
        store.load(next_day(first, seed=3), progress=False, source="day1")
    assert len(merged) == 3
    same_rows(platform_rows(store), before)
    record = store.last_load()
    assert record is not None and record.source == "day1" and record.finished is None
    store.close()


# -- 8. one writer at a time; readers alongside --------------------------------------------


def sweep_ids(store: Store) -> list[str]:
    return [s.split("-")[0] for s in store.read_sweeps()["sweep_id"]]


def concurrent_sweeps(store_args: list[str], open_store: object) -> None:
    """A paused sweep holds the lock: a no-wait sweep fails naming it, a reader reads, a
    waiting sweep runs after it; the store records one sweep per run, in order."""
    first = graphinv(store_args, "sweep", pause="graphinv.sweep:project:1", pause_seconds=15)
    wait_paused(first)
    impatient = graphinv(store_args, "sweep", lock_wait=0)
    code, _, err = finished(impatient)
    assert code == 1
    assert f"locked by a sweep by pid {first.pid}" in err, err
    reader = graphinv(store_args, "rings", "--format", "csv")
    code, out, err = finished(reader)
    assert code == 0, err
    assert out.startswith('"sweep_id","ring_id"') and len(out.splitlines()) > 1
    patient = graphinv(store_args, "sweep")
    for process in (first, patient):
        code, _, err = finished(process)
        assert code in (0, 10), err
    with open_store() as store:  # type: ignore[operator]
        assert sweep_ids(store) == ["S0001", "S0002", "S0003"]
        sweeps = store.read_sweeps()["sweep_id"].tolist()
        lineage = store.read_lineage(sweep_id=sweeps[-1])
        assert len(lineage) and set(lineage["previous_sweep_id"]) == {sweeps[-2]}


# slow: five command-line sweeps in subprocesses, one held at a pause point.
@pytest.mark.slow
def test_concurrent_sweeps_embedded(days: tuple[Path, Path], tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    code, _, err = finished(graphinv(["--db", str(db)], "load", str(days[0])))
    assert code == 0, err
    code, _, err = finished(graphinv(["--db", str(db)], "sweep"))
    assert code in (0, 10), err
    concurrent_sweeps(["--db", str(db)], lambda: EmbeddedStore(db, read_only=True))


def test_reader_opens_while_a_writer_has_the_file(tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    writer = EmbeddedStore(db, lock_wait=0)
    writer.load(generate(preset="small", seed=4, n_accounts=400), progress=False)
    with writer.exclusive("sweep"):
        # While the writer has the file open, a read-only open waits for it (bounded) ...
        with pytest.raises(StoreError, match=r"another process has it open \(a sweep by pid"):
            _open_elsewhere(db)
        # ... and succeeds once the writer releases it (a sweep does while it computes).
        writer.release()
        assert _open_elsewhere(db, read=True) == "400"
    writer.close()


def _open_elsewhere(db: Path, *, read: bool = False) -> str:
    code = (
        "from graphinv.stores.embedded import EmbeddedStore\n"
        f"s = EmbeddedStore({str(db)!r}, read_only=True, lock_wait=0.5)\n"
        "print(len(s.read_platform().accounts))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env(), cwd=ROOT)
    if done.returncode:
        raise StoreError(done.stderr.strip().splitlines()[-1])
    return done.stdout.strip()


# -- 9. the real cause of a failed write -------------------------------------------------


def _without_root_overrides() -> None:
    """In the child: drop the capabilities that let root ignore file permissions."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _small_file_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))


@pytest.fixture
def read_only_folder(days: tuple[Path, Path], tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    code, _, err = finished(graphinv(["--db", str(folder / "g.duckdb")], "load", str(days[0])))
    assert code == 0, err
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_commit_into_read_only_folder_names_the_cause(
    read_only_folder: Path, days: tuple[Path, Path]
) -> None:
    db = read_only_folder / "g.duckdb"
    loading = graphinv(["--db", str(db)], "load", str(days[1]), preexec_fn=_without_root_overrides)
    code, _, err = finished(loading)
    assert code == 1
    assert "Permission denied" in err and "g.duckdb" in err, err
    assert "no transaction is active" not in err
    # Read commands open read-only, so a store on read-only media still answers (here:
    # that it holds no sweep, the failed load having written nothing).
    code, _, err = finished(graphinv(["--db", str(db)], "rings", "--members",
                                       preexec_fn=_without_root_overrides))
    assert code == 1 and "no sweep in" in err and "Permission" not in err, err


def test_full_disk_names_the_cause(days: tuple[Path, Path], tmp_path: Path) -> None:
    db = tmp_path / "g.duckdb"
    # A per-process file size limit stands in for a full disk (EFBIG instead of ENOSPC).
    loading = graphinv(["--db", str(db)], "load", str(days[1]), preexec_fn=_small_file_limit)
    code, _, err = finished(loading)
    assert code == 1
    assert "File too large" in err, err
    assert "no transaction is active" not in err


def test_rollback_failure_never_hides_the_cause(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "g.duckdb")
    with pytest.raises(RuntimeError, match="the real cause") as raised, store._transaction():
        # DuckDB has ended the transaction (as after a failed COMMIT): ROLLBACK will fail.
        store._con.execute("ROLLBACK")
        raise RuntimeError("the real cause")
    assert any("no transaction is active" in note for note in raised.value.__notes__)
    store.close()


# -- Neo4j ---------------------------------------------------------------------------------

NEO4J_KILL_POINTS = [
    "graphinv.stores.neo4j.store:Neo4jStore._write_nodes:1",
    "graphinv.stores.neo4j.store:Neo4jStore._write_all_links:1",
]


@pytest.mark.parametrize("pause", NEO4J_KILL_POINTS, ids=["nodes", "links"])
def test_killed_neo4j_load_is_refused_until_rerun(
    pause: str, neo4j_driver: object, neo4j_uri: str, days: tuple[Path, Path],
    clean: EmbeddedStore, neo4j_auth: tuple[str, str] | None,
) -> None:
    day0, day1 = days
    store_args = ["--neo4j", neo4j_uri]
    code, _, err = finished(graphinv(store_args, "load", str(day0)))
    assert code == 0, err
    loading = graphinv(store_args, "load", str(day1), pause=pause)
    wait_paused(loading)
    loading.send_signal(signal.SIGKILL)
    loading.wait()

    # The killed load's lock is taken over (its process is gone); the sweep then refuses.
    code, _, err = finished(graphinv(store_args, "sweep"))
    assert code == 1 and REFUSAL in err and "sweeps refuse this store" in err, err
    assert "taking over the write lock of a load by pid" in err
    code, _, err = finished(graphinv(store_args, "rings"))
    assert "Warning:" in err and REFUSAL in err
    store = Neo4jStore.connect(neo4j_uri, auth=neo4j_auth, lock_wait=5)
    try:
        record = store.last_load()
        assert record is not None and record.finished is None and record.source == str(day1)
        with pytest.raises(StoreError, match=REFUSAL) as refused:
            run_sweep(store, progress=False)
        assert "may hold part of its rows" in str(refused.value)

        # The rerun (MERGE) completes it.
        code, _, err = finished(graphinv(store_args, "load", str(day1)))
        assert code == 0, err
        same_rows(platform_rows(store), platform_rows(clean))
        run_sweep(store, progress=False)
        assert ring_sets(store) == ring_sets(clean)
        assert "[GraphinvMeta]" not in store.graph_counts()
        assert LOAD_KEY in store.read_meta()
    finally:
        store.close()


def test_concurrent_sweeps_neo4j(
    neo4j_driver: object, neo4j_uri: str, neo4j_auth: tuple[str, str] | None,
    days: tuple[Path, Path],
) -> None:
    store_args = ["--neo4j", neo4j_uri]
    code, _, err = finished(graphinv(store_args, "load", str(days[0])))
    assert code == 0, err
    code, _, err = finished(graphinv(store_args, "sweep"))
    assert code in (0, 10), err
    concurrent_sweeps(store_args, lambda: Neo4jStore.connect(neo4j_uri, auth=neo4j_auth))


def test_neo4j_lock_of_another_host_waits_then_names_it(
    neo4j_driver: object, neo4j_uri: str, neo4j_auth: tuple[str, str] | None
) -> None:
    store = Neo4jStore.connect(neo4j_uri, auth=neo4j_auth, lock_wait=1)
    try:
        store.ensure_schema()
        other = LockHolder.here("sweep")
        other = LockHolder.from_dict({**other.to_dict(), "host": "elsewhere", "pid": 1})
        store._write(cypher.LOCK_TAKE, name="write", holder=other.to_dict())
        started = time.monotonic()
        locked = "locked by a sweep by pid 1 on host elsewhere"
        with pytest.raises(StoreError, match=locked), store.exclusive("sweep"):
            pass
        assert time.monotonic() - started >= 1
        code, out, err = finished(graphinv(["--neo4j", neo4j_uri], "unlock"))
        assert code == 0, err
        assert "Removed the write lock of a sweep by pid 1 on host elsewhere" in out
        with store.exclusive("sweep") as holder:
            assert holder.pid == os.getpid()
        assert store.break_lock() is None  # released on exit
    finally:
        store.close()
