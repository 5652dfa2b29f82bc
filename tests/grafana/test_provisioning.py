"""The Grafana files under grafana/: generated, schema-valid, one datasource, same alerts as
Prometheus. (Their queries run on a real Prometheus in tests/test_stack_promql.py.)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.grafana import DATASOURCE_UID, provisioning, render, stale, write
from exporter.grafana.dashboards import LIVE_UID, OVERVIEW_UID, VARIABLES
from exporter.prometheus import promql
from exporter.prometheus.rules import alert_name
from exporter.signals.alerts import alert_specs
from exporter.signals.thresholds import ENV_VAR, Bottleneck, Thresholds, Trigger, load_thresholds

ROOT = Path(__file__).resolve().parents[2]
VENDOR = Path("/work/shared/vendor")
DASHBOARDS = sorted((ROOT / "grafana/dashboards").glob("*.json"))
RULES_FILE = ROOT / "grafana/provisioning/alerting/batch-metrics-rules.yaml"
NOTIFICATIONS_FILE = ROOT / "grafana/provisioning/alerting/batch-metrics-notifications.yaml"
PROMETHEUS_RULES = ROOT / "prometheus/rules"


@pytest.fixture
def thresholds(monkeypatch: pytest.MonkeyPatch) -> Thresholds:
    monkeypatch.delenv(ENV_VAR, raising=False)
    return load_thresholds()


def load_yaml(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def grafana_rules() -> dict[str, dict[str, Any]]:
    (group,) = load_yaml(RULES_FILE)["groups"]
    return {rule["title"]: rule for rule in group["rules"]}


# -- generated and committed --------------------------------------------------------------


def test_committed_grafana_files_are_up_to_date(thresholds: Thresholds) -> None:
    assert stale(ROOT, thresholds) == [], "run: python -m exporter.grafana"


def test_a_changed_threshold_makes_the_files_stale_and_write_fixes_them(
    tmp_path: Path, thresholds: Thresholds
) -> None:
    assert sorted(write(tmp_path, thresholds)) == sorted(render(thresholds))
    assert stale(tmp_path, thresholds) == []
    slower = thresholds.model_copy(deep=True)
    slower.bottlenecks[0].threshold = 900
    assert stale(tmp_path, slower) == [
        "grafana/provisioning/alerting/batch-metrics-rules.yaml",
        "grafana/dashboards/batch-overview.json",
    ]
    assert write(tmp_path, slower) == stale(tmp_path, thresholds)
    assert "900" in (tmp_path / "grafana/dashboards/batch-overview.json").read_text()


def test_generated_yaml_has_no_anchors_grafana_would_not_expect() -> None:
    for path in (ROOT / "grafana/provisioning").rglob("*.yaml"):
        assert not re.search(r"[&*]id\d+", path.read_text()), path


# -- dashboards ----------------------------------------------------------------------------


def test_there_are_the_two_dashboards() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert uids == {OVERVIEW_UID, LIVE_UID}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_validates_against_the_grafana_schema(path: Path) -> None:
    schema = json.loads((VENDOR / "grafana-dashboard.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    dashboard = json.loads(path.read_text())
    validator.validate(dashboard)
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["gridPos"]["w"] = "wide"
    assert not validator.is_valid(broken)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_uses_only_the_pinned_datasource(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    refs = [v for k, v in walk(dashboard) if k == "datasource"]
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # the built-in annotations
    assert refs and all(r in ({"type": "prometheus", "uid": DATASOURCE_UID}, builtin) for r in refs)
    (provisioned,) = [
        d
        for d in load_yaml(ROOT / "grafana/provisioning/datasources/batch-metrics.yaml")[
            "datasources"
        ]
        if d["type"] == "prometheus"
    ]
    assert provisioned["uid"] == DATASOURCE_UID
    assert provisioned["url"] == "http://prometheus:9090"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_only_defined_variables(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    assert defined == set(VARIABLES)
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\$(\w+)", expr)}
    assert used <= defined
    assert all(
        t["datasource"]["uid"] == DATASOURCE_UID for p in panels(dashboard) for t in p["targets"]
    )


def test_overview_draws_the_alert_thresholds(thresholds: Thresholds) -> None:
    dashboard = json.loads((ROOT / "grafana/dashboards/batch-overview.json").read_text())
    by_title = {p["title"]: p for p in panels(dashboard)}
    steps = {
        title: [
            s["value"] for s in by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        ]
        for title in ("Mean duration per operation", "Item success rate per operation")
    }
    assert steps == {
        "Mean duration per operation": [None, 600],
        "Item success rate per operation": [None, 0.9],
    }
    style = by_title["Mean duration per operation"]["fieldConfig"]["defaults"]["custom"]
    assert style["thresholdsStyle"] == {"mode": "line+area"}
    expected = {
        "Mean duration per operation": promql.mean_duration("$window"),
        "Item success rate per operation": promql.success_rate("$window"),
    }
    for title, signal in expected.items():
        (target,) = by_title[title]["targets"]
        assert target["expr"].startswith(f"({signal}) and on (operation)")


def test_overview_covers_every_contract_metric() -> None:
    text = (ROOT / "grafana/dashboards/batch-overview.json").read_text()
    for metric in (
        "batch_operation_duration_seconds",
        "batch_operations_total",
        "batch_items_total",
        "batch_stage_duration_seconds",
        "batch_tokens_total",
        "batch_cost_usd_total",
        "batch_errors_total",
        "batch_last_completion_timestamp_seconds",
        "batch_last_success_timestamp_seconds",
    ):
        assert metric in text, metric


# -- alert rules ---------------------------------------------------------------------------


def test_alert_rules_are_the_prometheus_expressions_and_thresholds(thresholds: Thresholds) -> None:
    rules = grafana_rules()
    alerting: list[Bottleneck | Trigger] = [*thresholds.bottlenecks, *thresholds.triggers]
    assert set(rules) == {spec.name for spec in alert_specs(thresholds)}
    assert {alert_name(b.name) for b in alerting} | {"BatchTaskStalled"} <= set(rules)
    evaluator = {">": "gt", "<": "lt"}
    for bottleneck in alerting:
        rule = rules[alert_name(bottleneck.name)]
        query, reduce, threshold = (step["model"] for step in rule["data"])
        assert query["expr"] == promql.SIGNALS[bottleneck.signal](thresholds.window)
        assert (reduce["type"], reduce["expression"], reduce["reducer"]) == ("reduce", "A", "last")
        (condition,) = threshold["conditions"]
        assert (threshold["type"], threshold["expression"]) == ("threshold", "B")
        assert condition["evaluator"] == {
            "type": evaluator[bottleneck.comparison],
            "params": [bottleneck.threshold],
        }
        as_promql = (
            f"({query['expr']}) {bottleneck.comparison} {condition['evaluator']['params'][0]:g}"
        )
        assert as_promql == promql.alert_expr(bottleneck, thresholds, recorded=False)
        assert (rule["condition"], rule["for"], rule["labels"]["severity"]) == (
            "C",
            bottleneck.for_,
            bottleneck.severity,
        )
        assert rule["data"][0]["datasourceUid"] == DATASOURCE_UID
    stalled = rules["BatchTaskStalled"]
    query, _, threshold = (step["model"] for step in stalled["data"])
    limit = threshold["conditions"][0]["evaluator"]
    # no running task is normal: Grafana's query adds a zero series while the exporter is up
    assert query["expr"].startswith(f"({promql.HEARTBEAT_AGE_METRIC}) or on () ")
    assert limit["params"][0] == thresholds.stalled_heartbeat_seconds
    assert limit["type"] == "gt"
    # a dead exporter is never "OK"
    assert {rule["noDataState"] for rule in rules.values()} <= {"NoData", "Alerting"}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for a document's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_has_runbook_annotations() -> None:
    anchors = github_anchors((ROOT / "docs/monitoring-stack.md").read_text())
    for title, rule in grafana_rules().items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, title
        page, anchor = annotations["runbook_url"].split("#", 1)
        assert page == "docs/monitoring-stack.md"
        assert anchor in anchors, f"{title}: no section #{anchor} in {page}"


def test_alert_rules_match_the_committed_prometheus_rules(thresholds: Thresholds) -> None:
    files = sorted(PROMETHEUS_RULES.glob("*.yml"))
    assert files, "prometheus/rules/*.yml (generated by the Prometheus side) is missing"
    prom_rules = [r for f in files for g in load_yaml(f)["groups"] for r in g["rules"]]
    recorded = {r["record"]: r["expr"] for r in prom_rules if "record" in r}
    alerts = {r["alert"]: r for r in prom_rules if "alert" in r}
    grafana = grafana_rules()
    assert set(alerts) == set(grafana)
    alerting: list[Bottleneck | Trigger] = [*thresholds.bottlenecks, *thresholds.triggers]
    for bottleneck in alerting:
        name = alert_name(bottleneck.name)
        assert alerts[name]["expr"] == promql.alert_expr(bottleneck, thresholds)
        assert alerts[name].get("for", "0s") == grafana[name]["for"]
        series = promql.recorded_name(bottleneck.signal, thresholds.window)
        assert recorded[series] == grafana[name]["data"][0]["model"]["expr"]
    assert alerts["BatchTaskStalled"]["expr"] == promql.stalled_task_expr(thresholds)


def test_alerting_files_match_the_grafana_api_model() -> None:
    schema = json.loads((VENDOR / "grafana-alerting.schema.json").read_text())

    def validate(kind: str, instance: dict[str, Any]) -> None:
        jsonschema.Draft7Validator(
            {"$ref": f"#/definitions/{kind}", "definitions": schema["definitions"]}
        ).validate(instance)

    (group,) = load_yaml(RULES_FILE)["groups"]
    for rule in group["rules"]:
        validate(
            "Rule",
            {**rule, "orgID": group["orgId"], "ruleGroup": group["name"], "folderUID": "batch"},
        )
    notifications = load_yaml(NOTIFICATIONS_FILE)
    (contact_point,) = notifications["contactPoints"]
    for receiver in contact_point["receivers"]:
        # Grafana's provisioning files (and its own exports) spell the Alertmanager integration
        # "prometheus-alertmanager"; the HTTP API model's enum calls it "alertmanager".
        assert receiver["type"] == "prometheus-alertmanager"
        validate(
            "ContactPoint", {**receiver, "name": contact_point["name"], "type": "alertmanager"}
        )
    (policy,) = notifications["policies"]
    validate("NotificationPolicy", {k: v for k, v in policy.items() if k != "orgId"})
    assert policy["receiver"] == contact_point["name"]
    with pytest.raises(jsonschema.ValidationError):
        validate("Rule", {**group["rules"][0], "for": 300})


def test_contact_point_is_configurable_from_the_environment() -> None:
    (contact_point,) = load_yaml(NOTIFICATIONS_FILE)["contactPoints"]
    (receiver,) = contact_point["receivers"]
    assert receiver["settings"] == {"url": "$GRAFANA_ALERTMANAGER_URL"}


def test_the_compose_stack_alerts_once_through_prometheus() -> None:
    """Grafana's rules would send every condition a second time to the stack's Alertmanager."""
    grafana = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounted = {volume.split(":")[0] for volume in grafana["volumes"]}
    assert "./grafana/provisioning/alerting" not in mounted
    assert "./grafana/provisioning" not in mounted
    assert "./grafana/provisioning/datasources" in mounted


def test_dashboard_provider_points_where_compose_mounts_the_dashboards() -> None:
    (provider,) = load_yaml(ROOT / "grafana/provisioning/dashboards/batch-metrics.yaml")[
        "providers"
    ]
    assert provider["options"]["path"] == provisioning.CONTAINER_DASHBOARDS
    compose = load_yaml(ROOT / "docker-compose.yml")
    assert (
        f"./grafana/dashboards:{provisioning.CONTAINER_DASHBOARDS}:ro"
        in compose["services"]["grafana"]["volumes"]
    )


def test_generator_check_mode_reports_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.grafana.__main__ import main

    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale: grafana/dashboards/batch-live.json" in capsys.readouterr().err
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("window: [")
    assert main(["--thresholds", str(bad), "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("exporter.grafana: error: invalid thresholds file")


# -- what the on-call engineer needs ------------------------------------------------------


def by_title(name: str) -> dict[str, dict[str, Any]]:
    dashboard = json.loads((ROOT / f"grafana/dashboards/{name}.json").read_text())
    return {p["title"]: p for p in panels(dashboard)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_no_line_bridges_an_idle_period(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    spans = [v for k, v in walk(dashboard) if k == "spanNulls"]
    assert spans and not any(spans)


def test_overview_has_the_on_call_panels(thresholds: Thresholds) -> None:
    dashboard = json.loads((ROOT / "grafana/dashboards/batch-overview.json").read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0].startswith("Exporter health")
    shown = by_title("batch-overview")
    for title in (
        "Exporter scraped",
        "Invalid records",
        "Scan errors",
        "Last archive scan",
        "Runs per hour by outcome",
        "Failed items per hour",
        "Spend per day by model",
        "Cost per run by model",
        "Tokens per run by model",
        "Cache-read share of input tokens",
        "Top error types",
        "Error trend",
        "Stage p95 duration",
        "Stage p95 duration over time",
    ):
        assert title in shown, title
    (top,) = shown["Top error types"]["targets"]
    assert top["expr"].startswith("sort_desc(topk(10, ")
    per_hour = shown["Runs per hour by outcome"]
    assert per_hour["interval"] == "1h"
    assert per_hour["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    p95 = shown["p95 operation duration"]["fieldConfig"]["defaults"]
    assert [s["value"] for s in p95["thresholds"]["steps"]] == [None, 600]
    assert p95["custom"]["thresholdsStyle"]["mode"] != "off"
    since = shown["Time since last success"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in since] == ["green", "orange", "red"]
    assert since[2]["value"] == 7 * 86_400  # the alert window (thresholds.yaml)
    (alerts,) = [p for p in panels(dashboard) if p["type"] == "alertlist"]
    assert alerts["options"]["stateFilter"]["firing"] is True
    assert alerts["targets"] == [] and "datasource" not in alerts


def test_live_dashboard_reads_only_what_serve_exposes() -> None:
    text = (ROOT / "grafana/dashboards/batch-live.json").read_text()
    assert "batch_operations_running" not in text  # the in-process path only
    shown = by_title("batch-live")
    assert shown["Progress per running task"]["targets"][0]["expr"] == "batch_task_progress"
    table = shown["Per batch"]
    assert table["type"] == "table"
    assert {t["format"] for t in table["targets"]} == {"table"}
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]
