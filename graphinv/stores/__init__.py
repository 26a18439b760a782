"""Stores: the embedded DuckDB file (default) and Neo4j, behind one :class:`Store` protocol."""

from graphinv.stores.base import LoadStats, Store, SweepRecord, open_store
from graphinv.stores.embedded import EmbeddedStore
from graphinv.stores.neo4j import Neo4jStore

__all__ = ["EmbeddedStore", "LoadStats", "Neo4jStore", "Store", "SweepRecord", "open_store"]
