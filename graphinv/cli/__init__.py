"""The ``graphinv`` command line: thin commands over :class:`graphinv.context.Context`."""

from graphinv.cli.main import cli, main

__all__ = ["cli", "main"]
