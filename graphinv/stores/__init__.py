"""Stores: the embedded DuckDB file (default) and Neo4j, behind one :class:`Store` interface.

Backends are imported by :func:`open_store` when chosen, so the Neo4j driver is not
loaded for embedded work.
"""

from graphinv.stores.base import LoadStats, Store, SweepRecord
from graphinv.stores.factory import open_store

__all__ = ["LoadStats", "Store", "SweepRecord", "open_store"]
