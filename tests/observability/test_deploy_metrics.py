"""The dashboard and alert rules in deploy/ name only metrics the code really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from worker.observability import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bpasssync_[a-z_]+")


def dashboard_exprs() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "passsync.json").read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_dashboard_names_only_exported_series() -> None:
    named = {n for expr in dashboard_exprs() for n in NAME.findall(expr)}
    assert named, "the dashboard queries nothing"
    assert named <= metrics.exposed_names(), named - metrics.exposed_names()


def test_the_dashboard_covers_every_family() -> None:
    named = {n for expr in dashboard_exprs() for n in NAME.findall(expr)}
    for family in metrics.NAMES:
        assert any(n == family or n.startswith(family + "_") for n in named), family


def test_the_alert_rules_name_only_exported_series() -> None:
    named = {n for expr in alert_exprs() for n in NAME.findall(expr)}
    assert len(named) >= 6
    assert named <= metrics.exposed_names(), named - metrics.exposed_names()


def test_the_checker_catches_a_misspelt_series() -> None:
    assert "passsync_webhook_request_total" not in metrics.exposed_names()
    assert "passsync_webhook_requests_total" in metrics.exposed_names()
