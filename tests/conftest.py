"""Fixtures: one private RabbitMQ node for the session, a fresh queue per test, program runners."""

from __future__ import annotations

import os
import shutil
import sys
import uuid

import pytest

from chat_support import pubsub_emulator, terminal  # noqa: F401 - the chat tests' fixtures
from devtools.localbroker import LocalBroker, available
from support import CONSUMER_TIMEOUT_MS, MAX_MESSAGE_SIZE, RECEIVER, SENDER, STAGE, Program, program_env


def pytest_addoption(parser):
    parser.addoption("--cluster", action="store_true", default=False,
                     help="run the smoke test against the Kubernetes cluster in the current kubeconfig")


#: The files that take minutes, longest first: run first, so that with xdist (`-n N --dist loadfile`,
#: as run-tests.sh does) they overlap instead of ending the run one after another.
LONG_FILES = ("test_cluster_faults.py",
              "test_podman_e2e.py", "test_docker.py", "test_fault_matrix.py", "test_tutorials_interop.py",
              "test_chat_recovery.py", "test_consumer_cancel.py", "test_http_producer.py", "test_bench.py")


#: Files whose tests run twice, the programs on the compiled wire codec and on its pure-Python
#: fallback (RABBITIPC_PURE_PYTHON=1): no loss, no duplicate and the tutorials' interop hold on both.
BOTH_CODECS = ("test_fault_matrix.py", "test_cluster_faults.py", "test_tutorials_interop.py")


def pytest_generate_tests(metafunc):
    if metafunc.definition.path.name in BOTH_CODECS:
        # A row marked one_codec proves nothing codec-specific and costs minutes: compiled only.
        one = metafunc.definition.get_closest_marker("one_codec") is not None
        metafunc.parametrize("codec", ["compiled"] if one else ["compiled", "pure"], indirect=True)


@pytest.fixture(autouse=True)
def codec(request, monkeypatch):
    """The wire codec the programs a test starts use: "pure" forces the fallback; elsewhere the default."""
    choice = getattr(request, "param", None)
    if choice == "pure":
        monkeypatch.setenv("RABBITIPC_PURE_PYTHON", "1")
    elif choice == "compiled":
        monkeypatch.delenv("RABBITIPC_PURE_PYTHON", raising=False)
    return choice


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within a file is kept
    if config.getoption("--cluster"):
        return
    skip = pytest.mark.skip(reason="needs a Kubernetes cluster with the bundle deployed: run with --cluster")
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(skip)


#: Fault-matrix rows as the reports carry them: from this process, or from xdist's workers.
_MATRIX_ROWS: list[tuple] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Two things on each test's report:
    - Under CI=true a skip is a failure: CI installs every tool a test needs, so a skip there means
      an install step is missing (as catatonit once was) and must not pass as green. The cluster
      tier is the exception: no cluster can be had in CI.
    - The fault-matrix rows the test added travel on the report (user_properties), so the matrix is
      printed also when the tests run in xdist workers.
    - A failed test that used the session's node gets the node's recent warnings and errors as a
      report section: CI keeps no node logs, and a broker-side cause (a nack, a crashed queue) is
      otherwise invisible."""
    from support import FAULT_MATRIX

    outcome = yield
    report = outcome.get_result()
    node = item.funcargs.get("broker") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(node, LocalBroker):
        noted = [line for line in node.tail_log(600).splitlines() if "[warning]" in line or "[error]" in line]
        report.sections.append(("broker log (warnings and errors)", "\n".join(noted[-40:]) or "(none)"))
    if report.skipped and os.environ.get("CI") == "true" and not item.get_closest_marker("cluster") \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    if report.when == "teardown" and FAULT_MATRIX:
        pure = getattr(getattr(item, "callspec", None), "params", {}).get("codec") == "pure"
        rows = [(f"{row[0]} (pure codec)", *row[1:]) if pure else row for row in FAULT_MATRIX]
        report.user_properties.extend(("fault-matrix", row) for row in rows)
        FAULT_MATRIX.clear()


def pytest_runtest_logreport(report):
    _MATRIX_ROWS.extend(tuple(row) for key, row in report.user_properties if key == "fault-matrix")


def pytest_terminal_summary(terminalreporter):
    """Print the fault matrix when fault tests ran."""
    if not _MATRIX_ROWS:
        return
    terminalreporter.section("fault matrix")
    header = ("fault", "sent", "received", "lost", "duplicated", "extra")
    terminalreporter.write_line("%-46s %8s %9s %5s %11s %6s" % header)
    for row in _MATRIX_ROWS:
        terminalreporter.write_line("%-46s %8d %9d %5d %11d %6d" % row)


def running(node: LocalBroker):
    """A fixture's body for a private node: start it, yield it, then stop it and remove its files."""
    node.start()
    yield node
    node.stop()
    shutil.rmtree(node.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A private RabbitMQ node on free ports (or RABBITIPC_TEST_AMQP_URL's broker, not restartable)."""
    external = os.environ.get("RABBITIPC_TEST_AMQP_URL")
    if external:
        yield ExternalBroker(external)
        return
    if not available():
        pytest.fail("rabbitmq-server is not installed: apt-get install -y rabbitmq-server "
                    "(or set RABBITIPC_TEST_AMQP_URL to a broker)")
    yield from running(LocalBroker(tmp_path_factory.mktemp("rabbitmq")))


@pytest.fixture(scope="session")
def limited_broker(tmp_path_factory):
    """A second private node with tight limits, for the faults they cause: a 3 s consumer timeout
    (checked every second instead of every minute) and a 128 KiB max_message_size."""
    if os.environ.get("RABBITIPC_TEST_AMQP_URL") or not available():
        pytest.skip("needs rabbitmq-server to start a node with its own limits")
    yield from running(LocalBroker(tmp_path_factory.mktemp("limited-node"),
                                   extra_config=f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n"
                                                f"max_message_size = {MAX_MESSAGE_SIZE}",
                                   advanced_config="{rabbit, [{channel_tick_interval, 1000}]}"))


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory):
    """A private 3-node RabbitMQ cluster (devtools/localcluster.py), one per test session: the
    rabbit_cluster tier needs only rabbitmq-server, so it runs in CI like any other test."""
    from devtools.localcluster import LocalCluster

    if not available():
        pytest.fail("rabbitmq-server is not installed: apt-get install -y rabbitmq-server")
    cluster = LocalCluster(tmp_path_factory.mktemp("rabbitmq-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base_dir, ignore_errors=True)


class ExternalBroker:
    """A broker the tests did not start: usable, but not stoppable."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __getattr__(self, name):
        pytest.skip(f"needs a broker the tests can {name}; RABBITIPC_TEST_AMQP_URL is set")


@pytest.fixture
def queue(request) -> str:
    """A queue name of this test's own, so tests never see each other's messages."""
    return f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run(broker, queue):
    """Start sender/receiver programs on this test's queue; kills leftovers at teardown."""
    started: list[Program] = []

    def start(role: str, *args: str, env: dict | None = None, stdin: str | None = None,
              url: str | None = None, own_queue: bool = True) -> Program:
        """own_queue=False leaves out --queue (exclusive queues in the exchange patterns)."""
        script = {"sender": SENDER, "receiver": RECEIVER, "stage": STAGE}[role]
        queue_args = ["--queue", queue] if own_queue else []
        program = Program([sys.executable, str(script), *queue_args, *args],
                          program_env(url or broker.url, **(env or {})), stdin=stdin)
        started.append(program)
        return program

    yield start
    for program in started:
        program.stop()
