"""``python -m graphinv.cli``: the graphinv command."""

from graphinv.cli.main import main

main()
