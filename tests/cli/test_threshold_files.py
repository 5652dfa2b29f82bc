"""Every file the thresholds shape moves with them: ``rules --config-dir``, ``stack --init``,
and the rules the native stack loads, so that alerts and dashboards judge as ``trends`` does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from exporter.cli.main import main
from exporter.cli.threshold_files import RULES_FILE, threshold_files
from exporter.prometheus.rules import render_rules
from exporter.signals.thresholds import ENV_VAR, load_thresholds
from exporter.stack.native import StackOptions, prometheus_config

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "exporter" / "data" / "thresholds.yaml"
GRAFANA_RULES = "grafana/provisioning/alerting/batch-metrics-rules.yaml"


@pytest.fixture(autouse=True)
def _packaged_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def slower(tmp_path: Path) -> Path:
    """The packaged thresholds with the long-duration threshold at 1234 s instead of 600 s."""
    text = PACKAGED.read_text(encoding="utf-8")
    assert text.count("threshold: 600\n") == 1
    path = tmp_path / "slower.yaml"
    path.write_text(text.replace("threshold: 600\n", "threshold: 1234\n"), encoding="utf-8")
    return path


def _long_duration_expr(config_dir: Path) -> str:
    rules = yaml.safe_load((config_dir / RULES_FILE).read_text(encoding="utf-8"))
    (expr,) = (
        r["expr"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "BatchLongDuration"
    )
    return str(expr)


def _grafana_long_duration(config_dir: Path) -> list[str]:
    """The long-duration thresholds (600 s or 1234 s) of the Grafana alert rules' evaluators."""
    lines = (config_dir / GRAFANA_RULES).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() in ("- 600.0", "- 1234.0")]


def test_the_committed_files_are_what_the_packaged_thresholds_give() -> None:
    assert main(["rules", "--config-dir", str(ROOT), "--check"]) == 0


def test_rules_config_dir_writes_and_checks_every_file_together(
    tmp_path: Path, slower: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "conf"
    target.mkdir()
    assert main(["rules", "--config-dir", str(target), "--thresholds", str(slower)]) == 0
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(threshold_files(load_thresholds(slower)))
    assert _long_duration_expr(target).endswith("> 1234")
    assert _grafana_long_duration(target) == ["- 1234.0"]
    assert main(["rules", "--config-dir", str(target), "--thresholds", str(slower), "--check"]) == 0

    capsys.readouterr()
    assert main(["rules", "--config-dir", str(target), "--check"]) == 1  # the packaged 600 s
    err = capsys.readouterr().err
    hint = f" is stale: regenerate it with 'batch-metrics rules --config-dir {target}'\n"
    assert f"{target / RULES_FILE}{hint}" in err
    assert f"{target / GRAFANA_RULES}{hint}" in err
    assert "datasources" not in err  # does not depend on the thresholds

    assert main(["rules", "--config-dir", str(tmp_path / "missing")]) == 2
    assert main(["rules", "--config-dir", str(target), "--output", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "missing").exists()


def test_stack_init_writes_the_thresholds_in_effect_and_keeps_edited_files(
    tmp_path: Path, slower: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(slower))
    target = tmp_path / "project"
    edited = target / "grafana" / "dashboards" / "batch-live.json"
    edited.parent.mkdir(parents=True)
    edited.write_text("{}\n", encoding="utf-8")
    assert main(["stack", "--init", "--config-dir", str(target)]) == 0
    assert _long_duration_expr(target).endswith("> 1234")
    assert _grafana_long_duration(target) == ["- 1234.0"]
    overview = "grafana/dashboards/batch-overview.json"
    expected = threshold_files(load_thresholds(slower))[overview]
    assert (target / overview).read_text(encoding="utf-8") == expected
    assert edited.read_text(encoding="utf-8") == "{}\n"  # the user's: kept without --force


def _loaded_rules(tmp_path: Path, generated: str, caplog: pytest.LogCaptureFixture) -> str:
    """The text of the rule file the native stack loads from the repository's config, given
    the rules the thresholds in effect give."""
    options = StackOptions(
        config_dir=ROOT,
        ce_dir=tmp_path,
        state_dir=tmp_path,
        generated_rules={RULES_FILE.name: generated},
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config = prometheus_config(options, tmp_path / "rules")
    (loaded,) = config["rule_files"]
    return Path(loaded).read_text(encoding="utf-8")


def test_the_native_stack_loads_the_rules_of_the_thresholds_in_effect(
    tmp_path: Path, slower: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = render_rules(load_thresholds(slower))
    assert _loaded_rules(tmp_path, fresh, caplog) == fresh
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{ROOT / RULES_FILE} is stale for the thresholds in effect")
    assert f"batch-metrics rules --config-dir {ROOT}" in warning

    current = (ROOT / RULES_FILE).read_text(encoding="utf-8")
    assert _loaded_rules(tmp_path, current, caplog) == current
    assert not caplog.records
