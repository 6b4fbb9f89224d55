"""The Grafana dashboard and the Prometheus alerts name only metrics the server really exports:
the real app serves real traffic (a delivery that retries then succeeds, one dead letter, a
quota rejection, a replayed event, a forged Telegram call), its ``/metrics`` is scraped, and
every metric named in a dashboard query or an alert expression, parsed with a PromQL parser,
must be among the scraped series. The alert rules are checked and unit-tested with promtool.

What this does not prove: that Grafana draws the panels (no Grafana here)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser as promql
import pytest
import yaml
from cloud_kit import Account, Receiver, wait_for
from deploy_kit import DEPLOY, tool
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from claude_notify.cloud.server import auth
from claude_notify.cloud.server.app import create_app
from claude_notify.cloud.server.db.models import Delivery
from claude_notify.cloud.server.runtime import Runtime
from claude_notify.cloud.server.settings import Settings
from claude_notify.events import TaskEvent, utcnow

DASHBOARD = DEPLOY / "grafana" / "claude-notify.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMTOOL_HINT = "Debian's prometheus package brings promtool (scripts/test.sh installs it)"
TELEGRAM_SECRET = "s3cret-token"  # noqa: S105 - a test value


def metric_names(node: Any) -> set[str]:
    """Every metric a PromQL expression selects (its AST walked; unknown nodes fail)."""
    if isinstance(node, promql.VectorSelector):
        assert node.name, f"a selector without a metric name: {node}"
        return {node.name}
    if isinstance(node, promql.MatrixSelector):
        return metric_names(node.vector_selector)
    if isinstance(node, promql.BinaryExpr):
        return metric_names(node.lhs) | metric_names(node.rhs)
    if isinstance(node, promql.AggregateExpr):
        return metric_names(node.expr) | (metric_names(node.param) if node.param else set())
    if isinstance(node, promql.Call):
        return set().union(*(metric_names(a) for a in node.args))
    if isinstance(node, (promql.ParenExpr, promql.UnaryExpr, promql.SubqueryExpr)):
        return metric_names(node.expr)
    if isinstance(node, (promql.NumberLiteral, promql.StringLiteral)):
        return set()
    raise TypeError(f"unknown PromQL node {type(node).__name__}")


def test_the_parser_finds_every_metric() -> None:
    expr = promql.parse('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y_total"}[5m])))'
                        ' / on() group_left -(max_over_time(b[10m:1m])) + 2 * count(c > 3)')
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    assert len(queries) >= 10
    return queries


def alert_expressions() -> list[str]:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    return [str(r["expr"]) for r in rules]


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "claude-notify"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]


@pytest.fixture
def served(settings: Settings) -> Iterator[TestClient]:
    runtime = Runtime.build(settings.replace(telegram_webhook_secret=TELEGRAM_SECRET))
    try:
        with TestClient(create_app(runtime=runtime)) as client:
            yield client
    finally:
        runtime.close()


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for s in family.samples}


def user(client: TestClient, plan: str, receiver: Receiver) -> Account:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions.begin() as session:
        row, token = auth.create_user(session, f"{plan}-{id(receiver)}@example.com", plan="pro")
        account = Account(row.email, token.secret, row.id)
    created = client.post("/v1/channels", json={"type": "webhook", "config": {"url": receiver.url}},
                          headers=account.headers)
    assert created.status_code == 201, created.text
    if plan != "pro":
        with runtime.sessions.begin() as session:
            auth.set_plan(session, account.email, plan)  # a free plan refuses the webhook
    return account


def finished(task: str) -> dict[str, Any]:
    return TaskEvent(type="finished", source="run", task_id=task, machine_id="m",
                     status="success").to_dict()


def traffic(client: TestClient, receiver: Receiver) -> set[str]:
    """Everything the metrics count, happening once; the series names then exported."""
    pro, free = user(client, "pro", receiver), user(client, "free", receiver)
    series = ("claude_notify_notifications_total", (("channel", "webhook"), ("outcome", "{}")))

    def counted(outcome: str) -> Callable[[], bool]:
        key = (series[0], (series[1][0], ("outcome", outcome)))
        return lambda: scrape(client).get(key, 0) >= 1

    receiver.script = [(500, {})]  # retried, then sent
    assert client.post("/v1/events", json=finished("a"), headers=pro.headers).status_code == 202
    wait_for(counted("sent"), timeout=30, what="a retried delivery to be sent")
    receiver.script = [(400, {})]  # permanent: a dead letter
    dead = finished("b")
    assert client.post("/v1/events", json=dead, headers=pro.headers).status_code == 202
    wait_for(counted("dead"), timeout=30, what="a dead letter")
    client.post("/v1/events", json=dead, headers=pro.headers)  # a replay of the same event_id
    client.post("/v1/events", json=finished("c"), headers=free.headers)  # refused by the plan
    forged = client.post("/v1/telegram/webhook", json={"update_id": 1},
                         headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
    assert forged.status_code == 403
    samples = scrape(client)
    assert samples[("claude_notify_webhook_signature_failures_total",
                    (("provider", "telegram"),))] == 1.0
    assert samples[("claude_notify_events_duplicate_total", ())] == 1.0
    assert samples[(series[0], (series[1][0], ("outcome", "retry")))] == 1.0
    return {name for name, _ in samples}


def test_every_query_and_alert_names_an_exported_metric(
        served: TestClient, receiver: Receiver) -> None:
    exported = traffic(served, receiver)
    for kind, expressions in (("dashboard", dashboard_queries()), ("alert", alert_expressions())):
        for expr in expressions:
            names = metric_names(promql.parse(expr))
            assert names, f"{kind} query names no metric: {expr}"
            missing = names - exported
            assert not missing, f"{kind} query {expr!r} names {missing}, not in /metrics"


def test_a_misspelt_metric_would_be_caught(served: TestClient, receiver: Receiver) -> None:
    exported = traffic(served, receiver)
    typo = 'sum(rate(claude_notify_notification_total{outcome="dead"}[5m]))'
    assert metric_names(promql.parse(typo)) - exported == {"claude_notify_notification_total"}


def test_queue_age_counts_only_due_deliveries(settings: Settings) -> None:
    runtime = Runtime.build(settings)
    try:
        client = TestClient(create_app(runtime=runtime))  # no lifespan: no worker takes them
        assert scrape(client)[("claude_notify_queue_oldest_due_seconds", ())] == 0.0
        now = utcnow()
        with runtime.sessions.begin() as session:
            session.add_all([
                Delivery(channel_type="webhook", kind="test",
                         next_attempt_at=now - timedelta(seconds=120)),
                Delivery(channel_type="webhook", kind="test",  # a retry waiting out its backoff
                         next_attempt_at=now + timedelta(hours=1))])
        age = scrape(client)[("claude_notify_queue_oldest_due_seconds", ())]
        assert 120 <= age < 600
        assert scrape(client)[("claude_notify_queue_depth", (("status", "pending"),))] == 2.0
    finally:
        runtime.close()


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool", PROMTOOL_HINT), *args], capture_output=True,
                          text=True, timeout=120, check=False, cwd=cwd)


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", ALERTS.name, cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_unit_tests_the_alerts() -> None:
    """Synthetic series in alerts.test.yml: each alert fires when it should, and not before."""
    result = promtool("test", "rules", "alerts.test.yml", cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_notices_a_broken_rule(tmp_path: Path) -> None:
    (tmp_path / "alerts.yml").write_text(
        ALERTS.read_text().replace("> 300", "> 300 by (", 1))
    result = promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode != 0
