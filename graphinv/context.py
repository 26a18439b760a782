"""The context every command and notebook works through: settings plus one open store.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from graphinv.context import Context
>>> from graphinv.synth import generate, write_platform
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = write_platform(generate(preset="small", seed=5, n_accounts=1_000), Path(tmp) / "in")
...     with Context(db_path=Path(tmp) / "g.duckdb", use_env=False, progress=False) as ctx:
...         report = ctx.load(Path(tmp) / "in")
...         sweep = ctx.sweep()
...         top = ctx.rings().iloc[0]
>>> int(top["rank"])
1
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pandas as pd

from graphinv.config import Settings, load_settings
from graphinv.errors import InputError
from graphinv.evaluate import Evaluation, EvaluationOptions, evaluate
from graphinv.ingest.load import SUFFIXES, LoadReport, load_dir, read_table
from graphinv.ingest.pseudonymise import key_from_env
from graphinv.schema import TABLES, conform
from graphinv.score.scoring import score_rings
from graphinv.stores import Store, open_store
from graphinv.sweep import Detector, Measure, SweepReport, run_sweep

if TYPE_CHECKING:
    from graphinv.score.fit_weights import FitResult
    from graphinv.stores.neo4j.local import LocalNeo4j


@dataclass
class Context:
    """Settings and a store, opened on first use and closed with the context.

    Parameters
    ----------
    settings
        Options of every stage; read from ``graphinv.toml`` / the environment when None.
    neo4j_uri
        Use the Neo4j store at this URI (else ``NEO4J_URI`` when ``use_env``, else the
        embedded DuckDB file ``db_path``).
    db_path
        The embedded store's file.
    use_env
        Read ``NEO4J_*`` and ``GRAPHINV_*`` variables.
    progress
        Progress bars and spinners on the terminal.
    read_only
        Open the embedded store read-only: for commands that only read, so they work while
        a sweep computes and on read-only media.
    env_store
        Let ``NEO4J_URI`` choose the store when ``neo4j_uri`` is None; False when the
        embedded file was named explicitly (an explicit choice beats the environment).
    """

    settings: Settings
    neo4j_uri: str | None = None
    db_path: Path = Path("graphinv.duckdb")
    use_env: bool = True
    progress: bool = True
    read_only: bool = False
    env_store: bool = True
    _store: Store | None = field(default=None, init=False, repr=False)

    # Written out (dataclass keeps it) because settings may be None here, never afterwards:
    # then they are read from graphinv.toml / the environment, which use_env governs.
    def __init__(
        self,
        settings: Settings | None = None,
        neo4j_uri: str | None = None,
        db_path: Path = Path("graphinv.duckdb"),
        use_env: bool = True,
        progress: bool = True,
        read_only: bool = False,
        env_store: bool = True,
    ) -> None:
        self.settings = (
            settings if settings is not None else load_settings(environ=None if use_env else {})
        )
        self.neo4j_uri = neo4j_uri
        self.db_path = db_path
        self.use_env = use_env
        self.progress = progress
        self.read_only = read_only
        self.env_store = env_store
        self._store = None

    @property
    def store(self) -> Store:
        """The open store (opened on first use)."""
        if self._store is None:
            uri, _ = self._neo4j_target()
            self._store = open_store(
                neo4j_uri=uri,
                path=self.db_path,
                use_env=self.use_env,
                read_only=self.read_only,
                uri_from_env=False,
            )
        return self._store

    def load_warning(self) -> str | None:
        """Why results may not reflect the store's data (its last load did not finish)."""
        return self.store.unfinished_load()

    def store_description(self) -> str:
        """Which store the context works on and what chose it, e.g. for a command's stderr.

        Examples
        --------
        >>> Context(db_path=Path("g.duckdb"), use_env=False).store_description()
        'store: embedded DuckDB file g.duckdb'
        """
        uri, source = self._neo4j_target()
        if uri is None:
            return f"store: embedded DuckDB file {self.db_path}"
        return f"store: Neo4j at {uri} (from {source})"

    def _neo4j_target(self) -> tuple[str | None, str]:
        if self.neo4j_uri:
            return self.neo4j_uri, "--neo4j"
        env_uri = os.environ.get("NEO4J_URI") if self.use_env and self.env_store else None
        return (env_uri, "NEO4J_URI") if env_uri else (None, "")

    def load(
        self,
        folder: Path,
        *,
        quarantine_dir: Path | None = None,
        pseudonymise: bool = False,
        extra_kinds: tuple[str, ...] = (),
    ) -> LoadReport:
        """Validate a folder of input tables and load the good rows (see :func:`load_dir`).

        Link kinds accepted: the core ones, those declared in settings (``[load]
        extra_kinds`` and the keys of ``[projection] kind_weights``), and ``extra_kinds``;
        rows of any other kind go to quarantine. With ``pseudonymise`` the key comes from
        ``GRAPHINV_PSEUDONYMISE_KEY``; an unset or empty key is an error, checked before
        the store is opened.
        """
        key = key_from_env() if pseudonymise else None
        return load_dir(
            Path(folder),
            self.store,
            extra_kinds=self._kinds(extra_kinds),
            quarantine_dir=quarantine_dir,
            pseudonymise_key=key,
            progress=self.progress,
        )

    def bulk_load(
        self,
        folder: Path,
        server: LocalNeo4j,
        *,
        quarantine_dir: Path | None = None,
        pseudonymise: bool = False,
        extra_kinds: tuple[str, ...] = (),
    ) -> LoadReport:
        """First load of a large folder into the stopped, empty local Neo4j, offline with
        ``neo4j-admin database import`` (:class:`OfflineImport`); starts it afterwards.

        With ``GRAPHINV_NEO4J_COLUMNAR`` set (and ``use_env``), the columnar copy it names
        is loaded beside the graph and marked in step with it."""
        from graphinv.stores.factory import columnar_copy
        from graphinv.stores.neo4j.bulk import OfflineImport

        key = key_from_env() if pseudonymise else None
        copy = columnar_copy(os.environ) if self.use_env else None
        try:
            return load_dir(
                Path(folder),
                OfflineImport(server, columnar=copy),
                extra_kinds=self._kinds(extra_kinds),
                quarantine_dir=quarantine_dir,
                pseudonymise_key=key,
                progress=self.progress,
            )
        finally:
            if copy is not None:
                copy.close()

    def _kinds(self, extra_kinds: tuple[str, ...]) -> tuple[str, ...]:
        declared = self.settings.load.extra_kinds + tuple(self.settings.projection.kind_weights)
        return tuple(dict.fromkeys(declared + tuple(extra_kinds)))

    def sweep(
        self,
        *,
        alert_threshold: float | None = None,
        detector: Detector | None = None,
        measure: Measure | None = None,
    ) -> SweepReport:
        """Detect, score and record rings over the loaded platform (see :func:`run_sweep`);
        ``detector`` runs the detection and ``measure`` the features elsewhere
        (``graphinv.engines``)."""
        return run_sweep(
            self.store,
            settings=self.settings,
            alert_threshold=alert_threshold,
            progress=self.progress,
            detector=detector,
            measure=measure,
        )

    def rings(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """Rings of a sweep (latest by default), best rank first."""
        return self.store.read_rings(sweep_id=sweep_id)

    def members(self, *, sweep_id: str | None = None) -> pd.DataFrame:
        """``account_id, ring_id`` of every account in a ring of a sweep (latest by default)."""
        return self.store.read_members(sweep_id=sweep_id)

    def evaluate(self, labels_dir: Path, *, top_k: int = 20) -> Evaluation:
        """Compare the latest sweep's rings with the ``labels`` table in ``labels_dir``."""
        rings = self.rings()
        return evaluate(
            self.members(),
            read_labels(Path(labels_dir)),
            scores=rings[["ring_id", "score"]],
            settings=self.settings,
            options=EvaluationOptions(top_k=top_k),
        )

    def fit_weights(
        self,
        labels_dir: Path | None = None,
        *,
        labels: pd.DataFrame | None = None,
        seed: int = 0,
    ) -> FitResult:
        """Learn scoring weights from the latest sweep's rings and labelled past cases.

        Labels come from ``labels_dir`` (a ``labels`` table) or as a frame (``account_id,
        kind``, e.g. investigators' decisions); a frame with a ``ring_id`` column limits
        the fit to those rings, so undecided rings do not count as negatives.
        """
        # scikit-learn takes seconds to import; only this command needs it.
        from graphinv.score.fit_weights import fit_weights

        if (labels_dir is None) == (labels is None):
            raise InputError("give labels_dir or labels, not both or neither")
        members = self.members()
        if members.empty:
            raise InputError("no rings in the store yet: run a sweep before fitting weights")
        if labels is None:
            assert labels_dir is not None  # exactly one of the two (checked above)
            labels = read_labels(Path(labels_dir))
        elif "ring_id" in labels:
            members = members.loc[members["ring_id"].isin(labels["ring_id"])]
        scores = score_rings(members, self.store.read_platform(), options=self.settings.scoring)
        return fit_weights(scores, members, labels, seed=seed)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def read_labels(folder: Path) -> pd.DataFrame:
    """The ``labels`` table of ``folder`` (ground truth or past enforcement).

    Raises
    ------
    InputError
        The folder holds no labels file.
    """
    for suffix in SUFFIXES:
        file = folder / f"labels{suffix}"
        if file.is_file():
            return conform(read_table(file, "labels"), TABLES["labels"])
    raise InputError(f"{folder}: no labels table (labels.csv, labels.csv.gz or labels.parquet)")
