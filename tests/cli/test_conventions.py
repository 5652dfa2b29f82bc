"""What every command shares: --version, one-line errors, one exit-status convention, settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli.main import COMMANDS, main
from exporter.util.errors import EXIT_USAGE
from exporter.util.settings import SettingsError, load_settings

ARCHIVE_READERS = ("trends", "prioritize", "backfill", "recover", "serve")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("batch-metrics ") and done.stdout.count("\n") == 1


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit status (every command):" in out
    for code in ("0  done", "1  findings or failure", "2  usage or bad input", "3  done, but"):
        assert code in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["trends", "--recnt", "3"], "batch-metrics trends --help"),
        (["no-such-command"], "batch-metrics --help"),
        (["serve", "--port", "http"], "batch-metrics serve --help"),
        ([], "batch-metrics --help"),
    ],
)
def test_usage_errors_are_one_line_without_the_usage_block(
    argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("batch-metrics: error: ")
    assert "usage:" not in err and f"(see '{hint}')" in err


@pytest.mark.parametrize("command", ARCHIVE_READERS)
def test_a_missing_archive_is_the_same_error_everywhere(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-dir"
    assert main([command, "--archive", str(missing)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (
        f"batch-metrics: error: no archive at {missing} (run 'batch-metrics demo', instrument a "
        "batch or 'batch-metrics analyze' one first, or name another with --archive DIR)\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BATCH_METRICS_PORT", "abc", "BATCH_METRICS_PORT='abc' is not a port number (0..65535)"),
        ("BATCH_METRICS_PORT", "70000", "BATCH_METRICS_PORT='70000' is outside 0..65535"),
        ("BATCH_METRICS_BIND", "a b", "BATCH_METRICS_BIND='a b' is not a host name or address"),
    ],
)
def test_a_bad_variable_is_one_line_for_every_command(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_settings()

    done = _cli("serve", "--port", "0", env=dict(os.environ))
    assert (done.returncode, done.stderr) == (EXIT_USAGE, f"batch-metrics: error: {message}\n")


def test_settings_reach_serve_defaults(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "BATCH_METRICS_PORT": "9999",
            "BATCH_METRICS_ARCHIVE": str(tmp_path),
            "BATCH_METRICS_BIND": "",  # empty counts as unset
        }
    )
    assert (settings.port, settings.archive, settings.bind) == (9999, tmp_path, None)


def test_every_command_has_help() -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
