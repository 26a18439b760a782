"""The exceptions graphinv raises: one base class, a few subclasses callers can act on."""

from __future__ import annotations


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
