"""The dashboard and the alert rules: promtool checks and unit-tests the alerts, and a real Prometheus
scraping a short run (sender, stage, receiver, broker) answers every dashboard and alert query with data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from devtools.localbroker import free_port
from support import ROOT, wait_until

MONITORING = ROOT / "k8s" / "components" / "monitoring"
RULE = MONITORING / "prometheus-rule.yaml"
DASHBOARD = MONITORING / "dashboard.json"
#: Grafana's interval variables, as the test queries them.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__range": "5m"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is missing: apt-get install -y prometheus (scripts/system-packages.txt)")
    return path


def rules_file(directory: Path) -> Path:
    """The PrometheusRule's spec written as the plain rules file Prometheus and promtool read."""
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(RULE.read_text())["spec"]))
    return path


def alert_signals() -> dict[str, list[str]]:
    """Each alert's signals: its expression cut at `and`/`or`, each part without its comparison."""
    signals = {}
    for group in yaml.safe_load(RULE.read_text())["spec"]["groups"]:
        for rule in group["rules"]:
            parts = re.split(r"\s+(?:and|or|unless)\s+", rule["expr"])
            signals[rule["alert"]] = [re.split(r"\s+(?:>|<|==|!=|>=|<=)\s+", part)[0].strip() for part in parts]
    return signals


def dashboard_queries() -> list[str]:
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append(expr)
    return queries


def test_alert_rules_pass_promtool_check(tmp_path):
    """promtool accepts the rules (syntax, templates)."""
    result = subprocess.run([_tool("promtool"), "check", "rules", str(rules_file(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_promtools_unit_tests(tmp_path):
    """rules.test.yaml fires (and keeps quiet) each alert under promtool test rules, and covers them all."""
    rules_file(tmp_path)
    shutil.copy(MONITORING / "rules.test.yaml", tmp_path / "rules.test.yaml")
    result = subprocess.run([_tool("promtool"), "test", "rules", str(tmp_path / "rules.test.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for test in yaml.safe_load((MONITORING / "rules.test.yaml").read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert tested == set(alert_signals())


class Prometheus:
    """A Prometheus server (Debian's package) of the test's own, on a free port, in a temp dir."""

    def __init__(self, directory: Path, targets: dict[str, list[str]], rules: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]}
                               for job, hosts in targets.items()],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [_tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.load(response)
        except OSError:
            return []
        return answer["data"]["result"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def test_a_real_prometheus_shows_every_dashboard_and_alert_query(run, broker, queue, tmp_path):
    """A short run scraped by Prometheus: every dashboard query and every alert signal returns data."""
    _tool("prometheus")
    prometheus_port = broker.prometheus_port  # an external broker (RABBITIPC_TEST_AMQP_URL) skips here
    ports = {role: free_port() for role in ("sender", "stage", "receiver")}
    out = f"{queue}-out"
    receiver = run("receiver", "--metrics-port", str(ports["receiver"]), "--queue", out)
    stage = run("stage", "--metrics-port", str(ports["stage"]), "--handler", "slow_handler:upper",
                "--forward-to", out)
    receiver.wait_for_line("consuming from queue")
    stage.wait_for_line("consuming from queue")
    sender = run("sender", "--metrics-port", str(ports["sender"]), "--rate", "50")
    prometheus = Prometheus(tmp_path, {
        "rabbitipc": [f"127.0.0.1:{port}" for port in ports.values()],
        "rabbitmq": [f"127.0.0.1:{prometheus_port}"],
    }, rules_file(tmp_path))
    try:
        queries = dashboard_queries() + [signal for signals in alert_signals().values() for signal in signals]
        missing: list[str] = []

        def all_answered() -> bool:
            missing[:] = [expr for expr in queries if not prometheus.query(expr)]
            return not missing

        wait_until(all_answered, 90, "every query to return data",
                   on_timeout=lambda: "no data for:\n  " + "\n  ".join(missing) + "\n"
                   + prometheus.log.read_text()[-3000:] + sender.output[-2000:])
        up = prometheus.query("up == 1")
        assert len(up) == 4, up
        # the latency the dashboard plots is the one of the messages that went through
        p99 = prometheus.query(f'histogram_quantile(0.99, sum by (le) (rabbitipc_end_to_end_latency_seconds_bucket'
                               f'{{queue="{out}"}}))')
        assert 0 < float(p99[0]["value"][1]) < 5
    finally:
        prometheus.stop()
