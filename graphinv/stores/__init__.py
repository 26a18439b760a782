"""Stores: the embedded DuckDB file (default) and Neo4j, behind the abstract :class:`Store`.

The loader writes to any :class:`LoadTarget` (every store is one; so is the offline Neo4j
importer).

Backends are imported by :func:`open_store` when chosen, so the Neo4j driver is not
loaded for embedded work.
"""

from graphinv.stores.base import LoadStats, LoadTarget, Store, SweepRecord
from graphinv.stores.factory import open_store

__all__ = ["LoadStats", "LoadTarget", "Store", "SweepRecord", "open_store"]
