"""The smoke scenario: driver-agnostic checks of a running rabbitipc Pod."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from rabbitipc import defaults
from rabbitipc.loglines import PROBLEM, RECEIVED, SENT

LOGGER = logging.getLogger(__name__)



class Driver(Protocol):
    """What the scenario needs from a platform running the bundle."""

    def describe(self) -> str: ...

    def wait_ready(self, timeout: float) -> None:
        """Return when every container is running and ready; raise TimeoutError otherwise."""

    def logs(self, container: str) -> str:
        """The container's current log."""

    def management_get(self, path: str):
        """GET a management API path (e.g. /api/queues/%2F/hello) and return the parsed JSON."""

    def restart_broker(self) -> None:
        """Crash or stop the RabbitMQ container and let it come back as the platform does."""


@dataclass
class Report:
    """Named checks with their outcome and a detail line each."""

    target: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        LOGGER.info("%s %s: %s", "PASS" if ok else "FAIL", name, detail)
        return ok

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def render(self) -> str:
        lines = [f"smoke test of {self.target}: {'PASSED' if self.ok else 'FAILED'}"]
        lines += [f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}" for name, ok, detail in self.checks]
        return "\n".join(lines)


def ids(pattern: re.Pattern, text: str) -> list[str]:
    return [match.group(2) for match in pattern.finditer(text)]


def _poll(condition, timeout: float, interval: float = 1.0):
    """Call condition until it returns a truthy value or timeout passes; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def smoke(
    driver: Driver,
    min_messages: int = 5,
    timeout: float = 300,
    queue: str = defaults.QUEUE,
    max_backlog: int = 100,
    restart_broker: bool = False,
) -> Report:
    """Run every check against the driver's Pod and return the report (never raises for a failed check)."""
    report = Report(driver.describe())
    try:
        driver.wait_ready(timeout)
    except TimeoutError as exc:
        report.add("pod ready", False, str(exc))
        return report
    report.add("pod ready", True, "every container running and ready")

    def enough_received() -> str | None:
        log = driver.logs("receiver")
        return log if len(ids(RECEIVED, log)) >= min_messages else None

    receiver_log = _poll(enough_received, timeout) or driver.logs("receiver")
    seqs = [int(m.group(1)) for m in RECEIVED.finditer(receiver_log)]
    if not report.add("messages flow", len(seqs) >= min_messages,
                      f"{len(seqs)} received lines in the receiver log (want >= {min_messages})"):
        return report
    report.add("sequence advances", len(set(seqs)) == len(seqs) and seqs[-1] > seqs[0],
               f"seq {seqs[0]} .. {seqs[-1]}, {len(seqs) - len(set(seqs))} repeated")

    for container in ("sender", "receiver"):
        problems = [line for line in driver.logs(container).splitlines() if PROBLEM.search(line)]
        report.add(f"no errors in {container} log", not problems, problems[0] if problems else "none")

    _check_queue(driver, report, queue, max_backlog)
    if restart_broker:
        _check_broker_restart(driver, report, timeout)
    return report


def _check_queue(driver: Driver, report: Report, queue: str, max_backlog: int) -> None:
    try:
        info = _poll(lambda: _queue_with_consumer(driver, queue), 60)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the API is a failed check, reported
        report.add("management API", False, f"{exc.__class__.__name__}: {exc}")
        return
    if not report.add("management API", info is not None, f"queue {queue!r} with a consumer"
                      if info else f"queue {queue!r} missing or without consumer"):
        return
    report.add("queue durable with consumer", info["durable"] and info["consumers"] >= 1,
               f"durable={info['durable']} consumers={info['consumers']}")
    ready = info.get("messages_ready", 0)
    report.add("queue not piling up", ready <= max_backlog, f"{ready} messages ready (limit {max_backlog})")


def _queue_with_consumer(driver: Driver, queue: str):
    info = driver.management_get(f"/api/queues/%2F/{queue}")
    return info if info and info.get("consumers", 0) >= 1 else None


def _check_broker_restart(driver: Driver, report: Report, timeout: float) -> None:
    """Restart the broker mid-stream; every message the sender logged as sent must be received."""
    before = len(ids(SENT, driver.logs("sender")))
    driver.restart_broker()
    try:
        driver.wait_ready(timeout)
    except TimeoutError as exc:
        report.add("ready after broker restart", False, str(exc))
        return
    report.add("ready after broker restart", True, "broker back, programs reconnected")
    resumed = _poll(lambda: len(ids(SENT, driver.logs("sender"))) >= before + 3, timeout)
    report.add("sender resumed", bool(resumed), f"{len(ids(SENT, driver.logs('sender'))) - before} sent since")
    accepted = set(ids(SENT, driver.logs("sender")))

    def missing() -> set[str]:
        return accepted - set(ids(RECEIVED, driver.logs("receiver")))

    _poll(lambda: not missing(), timeout)
    lost = missing()
    report.add("nothing accepted lost", not lost,
               f"{len(accepted)} accepted, {len(lost)} not received" + (f" e.g. {sorted(lost)[:3]}" if lost else ""))
