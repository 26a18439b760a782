"""Investigator-facing details of the command line that need no store."""

from __future__ import annotations

import logging

from graphinv.cli.main import _RetryCounter, _shorten


def test_driver_retry_warnings_are_counted_not_printed() -> None:
    counter = _RetryCounter()

    def record(message: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("neo4j.session", logging.WARNING, __file__, 1, message,
                                 args, None)

    retry = record("Transaction failed and will be retried in %ss (%s)", 0.9,
                   "DeadlockDetected")
    # False: the logger drops the record (not printed); True: it goes on to the handlers.
    assert counter.filter(retry) is False
    assert counter.filter(record("something else")) is True
    assert counter.count == 1


def test_explanations_are_cut_between_words() -> None:
    text = "88% of members' prompts on reasoning-eliciting templates (14 such templates)"
    short = _shorten(text, 40)
    assert short.endswith(" …") and len(short) <= 41
    assert text.startswith(short[:-2]) and text[len(short) - 2] == " "
    assert _shorten("short", 40) == "short"


def test_read_commands_say_there_is_no_sweep_and_create_no_store(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from graphinv.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEO4J_URI", raising=False)
    runner = CliRunner()
    for args in (["ring", "R-1"], ["rings"], ["review"], ["case", "R-1", "--csv", "a.csv"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "no sweep in ./graphinv.duckdb" in result.output, result.output
    assert not (tmp_path / "graphinv.duckdb").exists()


def test_error_messages_print_brackets_literally(tmp_path) -> None:
    from click.testing import CliRunner

    from graphinv.cli import cli

    # A path (or an extra like graphinv[notebooks]) in square brackets is not Rich markup.
    db = tmp_path / "store[notebooks].duckdb"
    result = CliRunner().invoke(cli, ["--db", str(db), "rings"])
    assert result.exit_code == 1
    assert "store[notebooks].duckdb" in result.output
