"""A private RabbitMQ node from the system's rabbitmq-server, for tests and the local run.

Standard library only, so the shell scripts can use it before any virtualenv exists.
Everything the node writes (data, logs, config, Erlang cookie) lives under one directory,
and every port is chosen free unless given, so it never collides with a broker the user
already runs. The node runs as the current user via /usr/lib/rabbitmq/bin (the /usr/sbin
wrappers switch to the rabbitmq user, who cannot write to our directory).

    python3 -m devtools.localbroker start --dir .rabbitmq   # prints the AMQP URL
    python3 -m devtools.localbroker stop --dir .rabbitmq
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOGGER = logging.getLogger(__name__)

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN_DIR", "/usr/lib/rabbitmq/bin"))
STATE_FILE = "broker.json"
#: Seconds without any Erlang VM for a node being started before its boot counts as crashed.
VM_GONE_AFTER = 2.0


class BrokerError(RuntimeError):
    """The node could not be started or stopped; the message says why and where the log is."""


class NotStarted(BrokerError):
    """The node was launched but did not come up in time (slow, or its VM died while booting)."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port nothing listens on, outside the kernel's ephemeral range.

    An ephemeral port can be taken by some client's outgoing connection while the broker is
    down (a client retrying localhost:PORT can even connect to itself), and the restarted
    broker would then fail with eaddrinuse. Ports below the range are never handed out that way.
    """
    low, high = _ephemeral_range()
    pool = [port for port in range(10000, 30000) if not low <= port <= high]
    for port in random.sample(pool, 200):
        if port in (4369, 5672, 15672, 25672):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BrokerError("no free TCP port found below the ephemeral range")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def available() -> bool:
    """True when the system's rabbitmq-server is installed where we can run it."""
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


class LocalBroker:
    """One private RabbitMQ node: start, stop, restart, kill, rabbitmqctl."""

    def __init__(
        self,
        base_dir: str | os.PathLike,
        amqp_port: int | None = None,
        management_port: int | None = None,
        extra_config: str = "",
        advanced_config: str = "",
        *,
        write: bool = True,
        attached: bool = False,
    ) -> None:
        """write=False: use the node as its files describe it (to stop it, or ask whether it runs).
        attached=True: the node stays in this process's session, as one started from the same shell
        (see start())."""
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_state()
        self.amqp_port = amqp_port or state.get("amqp_port") or free_port()
        self.management_port = management_port or state.get("management_port") or free_port()
        self.prometheus_port = state.get("prometheus_port") or free_port()
        self.dist_port = state.get("dist_port") or free_port()
        self.nodename = state.get("nodename") or f"rabbitipc-{os.getpid()}-{self.amqp_port}@localhost"
        self.extra_config = extra_config
        self.advanced_config = advanced_config  # Erlang terms for settings rabbitmq.conf lacks
        self.attached = attached
        self.erl_args = ""  # more arguments for the node's Erlang VM (the cluster's: its dist source address)
        if write:
            self._write_files()

    # -- addresses -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """AMQP URL for the default guest user (allowed because we connect over loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}/"

    @property
    def prometheus_url(self) -> str:
        """The rabbitmq_prometheus plugin's endpoint (aggregated metrics; /metrics/detailed per queue)."""
        return f"http://127.0.0.1:{self.prometheus_port}/metrics"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "log" / f"{self.nodename}.log"

    # -- files -----------------------------------------------------------------------
    def _load_state(self) -> dict:
        path = self.base_dir / STATE_FILE
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return {}
        return {}

    def _write_files(self) -> None:
        (self.base_dir / "home").mkdir(exist_ok=True)
        (self.base_dir / "log").mkdir(exist_ok=True)
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {self.prometheus_port}\n"
            "prometheus.tcp.ip = 127.0.0.1\n"
            # per-queue numbers on /metrics too (backlog, consumers, dead letters): few queues here
            "prometheus.return_per_object_metrics = true\n"
            f"{self.extra_config}\n"
        )
        (self.base_dir / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
        (self.base_dir / "advanced.config").write_text(f"[{self.advanced_config}].\n")
        state = {
            "amqp_port": self.amqp_port,
            "management_port": self.management_port,
            "prometheus_port": self.prometheus_port,
            "dist_port": self.dist_port,
            "nodename": self.nodename,
            "management_url": self.management_url,
            "prometheus_url": self.prometheus_url,
        }
        if "load_definitions" in self.extra_config:  # the definitions replace guest with their own users
            state["urls"] = "urls.env: one user per program"
        else:
            state["url"] = self.url
        (self.base_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "rabbitmq.pid"

    def env(self) -> dict[str, str]:
        """Environment that points rabbitmq-server and rabbitmqctl at this node only."""
        env = dict(os.environ)
        env.update(
            HOME=str(self.base_dir / "home"),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_MNESIA_BASE=str(self.base_dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base_dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base_dir / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base_dir / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base_dir / "enabled_plugins"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_PID_FILE=str(self.pid_file),
            # Erlang distribution (the node's dist port, and epmd when this node starts it) on
            # loopback only: anyone who reaches it with the cookie owns the node, and a laptop's
            # other interfaces are not ours to open. rabbitmqctl reaches it over localhost.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                f"-kernel inet_dist_use_interface {{127,0,0,1}} {self.erl_args}".strip()),
            ERL_EPMD_ADDRESS="127.0.0.1",
            # A VM that dies writes its crash dump here, not into whatever directory started it.
            ERL_CRASH_DUMP=str(self.base_dir / "log" / "erl_crash.dump"),
        )
        return env

    # -- lifecycle -------------------------------------------------------------------
    def pid(self) -> int | None:
        """PID of the running node's Erlang VM, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.amqp_port)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run rabbitmqctl against this node and return the completed process."""
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=False,
        )

    def start(self, timeout: float = 90) -> None:
        """Start the node (no-op when it already runs) and wait until AMQP accepts connections."""
        if self.running():
            return
        if not available():
            raise BrokerError(
                f"rabbitmq-server is not installed ({RABBITMQ_BIN} missing): "
                "apt-get install -y rabbitmq-server"
            )
        for name, port in (("AMQP", self.amqp_port), ("management", self.management_port),
                           ("Prometheus", self.prometheus_port)):
            if port_open(port):
                raise BrokerError(f"{name} port {port} is already taken by another program")
        self.pid_file.unlink(missing_ok=True)
        if self.attached:
            # In this session (its own process group: a terminal's Ctrl-C is ours to handle), so under
            # Linux's scheduler autogroups the node shares the CPU with our children thread by thread,
            # as a node started from the same shell does; -detached makes a session of its own, which
            # the scheduler weighs as one group against all of ours (the bench: docs/performance.md).
            with open(self.base_dir / "log" / "console.log", "ab") as console:
                server = subprocess.Popen([str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(),
                                          stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                          process_group=0)
            threading.Thread(target=server.wait, daemon=True).start()  # reaped once it exits: no zombie
        else:
            subprocess.run(
                [str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
                env=self.env(), capture_output=True, text=True, timeout=60, check=False,
            )
        deadline = time.monotonic() + timeout
        vm_gone = self._absence_check()
        while time.monotonic() < deadline:
            if self.pid_file.exists():
                break
            if vm_gone():
                raise NotStarted(f"RabbitMQ node {self.nodename} did not start: its Erlang VM exited while "
                                 f"booting\n{self.tail_log()}")
            time.sleep(0.1)
        result = self._wait_booted(deadline, vm_gone)
        if result.returncode != 0 or not self._wait_port(deadline):
            raise NotStarted(
                f"RabbitMQ node {self.nodename} did not start within {timeout:.0f}s: "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.tail_log()}"
            )

    def _absence_check(self) -> Callable[[], bool]:
        """A check for the loops that wait on a boot: True once this node has had no Erlang VM for
        VM_GONE_AFTER seconds in a row (looked up at most twice a second)."""
        state = {"missing_since": None, "checked": 0.0, "gone": False}

        def gone() -> bool:
            now = time.monotonic()
            if now - state["checked"] >= 0.5:
                state["checked"] = now
                if self.vm_pids():
                    state["missing_since"] = None
                else:
                    state["missing_since"] = state["missing_since"] or now
                state["gone"] = state["missing_since"] is not None and now - state["missing_since"] >= VM_GONE_AFTER
            return state["gone"]

        return gone

    def _wait_booted(self, deadline: float, vm_gone: Callable[[], bool]) -> subprocess.CompletedProcess:
        """`rabbitmqctl wait` for the booting node, ended early when the node's VM is gone (a boot that
        crashed: rabbitmqctl itself would wait out its whole timeout)."""
        seconds = max(1, int(deadline - time.monotonic()))
        command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.nodename, "wait", str(self.pid_file),
                   "--timeout", str(seconds)]
        waiter = subprocess.Popen(command, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while waiter.poll() is None and time.monotonic() < deadline + 5:
                if vm_gone():
                    waiter.kill()
                    waiter.communicate()
                    return subprocess.CompletedProcess(command, 1, "", "its Erlang VM exited while booting")
                time.sleep(0.5)
        finally:
            if waiter.poll() is None:
                waiter.kill()
        stdout, stderr = waiter.communicate()
        return subprocess.CompletedProcess(command, waiter.returncode, stdout, stderr)

    def _wait_port(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if port_open(self.amqp_port):
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 60) -> None:
        """Stop the node gracefully and wait for its VM to exit (no-op when not running).

        A node caught while starting (no pid file yet, or not answering rabbitmqctl: a Ctrl-C during
        start()) gets SIGTERM, which the Erlang VM takes as a request to stop."""
        pid = self.pid()
        if pid is None:
            for stray in self.vm_pids():
                self._end(stray)
            return
        try:
            stopped = self.ctl("stop", str(self.pid_file), timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            # a loaded machine, or a cluster stopping all at once: rabbitmqctl may outwait its
            # deadline while the VM goes on shutting down. Signals finish the job.
            LOGGER.warning("rabbitmqctl stop of %s took over %.0fs; signalling its VM %s", self.nodename, timeout, pid)
            stopped = False
        if not stopped and self.pid() is not None:
            self._end(pid)
            return
        self._wait_gone(pid, timeout)

    def _end(self, pid: int, grace: float = 15) -> None:
        """SIGTERM to a VM, SIGKILL after `grace` seconds: one still booting may not heed SIGTERM yet."""
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30)):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                return  # gone meanwhile (the terminal's Ctrl-C reached it too)
            try:
                self._wait_gone(pid, wait)
                return
            except BrokerError:
                if signum == signal.SIGKILL:
                    raise

    def vm_pids(self) -> list[int]:
        """The Erlang VMs of this node's directory (their `-home DIR/home` argument), with a pid file or not."""
        marker = b"\0-home\0" + str(self.base_dir / "home").encode() + b"\0"
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def kill(self) -> None:
        """SIGKILL the node's VM: a crash, not a shutdown."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, 30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_gone(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise BrokerError(f"RabbitMQ VM {pid} still running after {timeout:.0f}s")
        deadline = time.monotonic() + timeout
        while port_open(self.amqp_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def tail_log(self, lines: int = 40) -> str:
        """Last lines of the node's log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_file})"
        return "\n".join(text[-lines:])


def _start_or_undo(broker: LocalBroker) -> None:
    """start(); a Ctrl-C, SIGTERM or hangup meanwhile stops what was started and exits 130, without a traceback.
    (start-local-docker-rabbitmq.sh runs Python with Ctrl-C ignored, so none lands during its imports.)"""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    try:
        broker.start()
    except KeyboardInterrupt:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the stop itself is not cut short
        print(f"localbroker: interrupted while starting: stopping the node in {broker.base_dir}", file=sys.stderr)
        broker.stop()
        sys.exit(130)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devtools.localbroker",
        description="Run a private RabbitMQ node from the system's rabbitmq-server.",
    )
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    parser.add_argument("--dir", default=".rabbitmq", help="node directory (default: .rabbitmq)")
    parser.add_argument("--amqp-port", type=int, help="AMQP port (default: 5672 if free, else any free port)")
    parser.add_argument("--management-port", type=int,
                        help="management UI port (default: 15672 if free, else any free port)")
    parser.add_argument("--config", help="extra rabbitmq.conf lines to add (e.g. load_definitions)")
    args = parser.parse_args(argv)

    base = Path(args.dir)
    fresh = not (base / STATE_FILE).exists()
    amqp_port, management_port = args.amqp_port, args.management_port
    if fresh and amqp_port is None and not port_open(5672):
        amqp_port = 5672
    if fresh and management_port is None and not port_open(15672):
        management_port = 15672
    extra = Path(args.config).read_text() if args.config else ""
    broker = LocalBroker(base, amqp_port, management_port, extra_config=extra, write=args.action == "start")
    return run_action("localbroker", lambda: _act(broker, args.action))


def _act(broker: LocalBroker, action: str) -> int:
    """One command-line action on the node; its exit code (status: 3 when stopped)."""
    if action == "start":
        _start_or_undo(broker)
        print(broker.url)
    elif action == "stop":
        broker.stop()
    elif action == "status":
        print("running" if broker.running() else "stopped")
        return 0 if broker.running() else 3
    else:
        print(broker.url)
    return 0


def run_action(prog: str, action: Callable[[], int]) -> int:
    """A command's exit code: the action's, or 1 with one line on stderr when the broker fails or times out."""
    try:
        return action()
    except (BrokerError, subprocess.TimeoutExpired) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
