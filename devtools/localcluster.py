"""A private 3-node RabbitMQ cluster from the system's rabbitmq-server, for tests and the local run.

Standard library only, like devtools/localbroker.py, whose LocalBroker runs each node: every node
has its own directory, name, AMQP, management and distribution ports; the nodes share one Erlang
cookie (written into each node's HOME) and the one epmd on 127.0.0.1:4369 that the first node
starts. Nodes 2 and 3 join node 1 (`rabbitmqctl stop_app`, `join_cluster`, `start_app`).

    python3 -m devtools.localcluster start --dir .rabbitmq-cluster   # prints the node list URL
    python3 -m devtools.localcluster kill 1 --dir .rabbitmq-cluster  # SIGKILL node 1 (or stop, start)
    python3 -m devtools.localcluster stop --dir .rabbitmq-cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from devtools.localbroker import STATE_FILE, BrokerError, LocalBroker, NotStarted, run_action

LOGGER = logging.getLogger(__name__)

COOKIE_FILE = "erlang.cookie"
SIZE = 3
#: Seconds of silence after which a node counts another as gone during partition(): RabbitMQ's
#: default of 60 would make a partition row wait a minute before anything happens.
PARTITION_TICKTIME = 4


def dist_source(number: int) -> str:
    """The address node `number` opens its distribution connections from (all of 127/8 is loopback):
    a partition drops exactly the traffic between the nodes, while rabbitmqctl (from 127.0.0.1) and
    AMQP go on."""
    return f"127.0.0.{10 + number}"


#: Boots of one node before its start fails (see LocalCluster._boot).
BOOT_ATTEMPTS = 3


class LocalCluster:
    """Three private RabbitMQ nodes joined into one cluster: start, stop, and per node kill/stop/start."""

    def __init__(self, base_dir: str | os.PathLike, size: int = SIZE, extra_config: str = "", *,
                 attached: bool = False) -> None:
        """attached: each node in this process's session (LocalBroker's attached; the bench's cluster)."""
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cookie_path = self.base_dir / COOKIE_FILE
        if not cookie_path.exists():
            cookie_path.write_text(secrets.token_hex(20))
        self.cookie = cookie_path.read_text().strip()
        tag = f"c{os.getpid()}"
        self.nodes = []
        for number in range(1, size + 1):
            node_dir = self.base_dir / f"node{number}"
            fresh = not (node_dir / STATE_FILE).exists()
            node = LocalBroker(node_dir, extra_config=extra_config, attached=attached)
            node.erl_args = f"-kernel inet_dist_connect_options [{{ip,{{{dist_source(number).replace('.', ',')}}}}}]"
            if fresh:  # a distinct, recognisable name per node (cNAMEn1@localhost), kept across restarts
                node.nodename = f"{tag}n{number}-{node.amqp_port}@localhost"
                node._write_files()
            cookie = node_dir / "home" / ".erlang.cookie"
            if not cookie.exists() or cookie.read_text() != self.cookie:
                cookie.unlink(missing_ok=True)
                cookie.write_text(self.cookie)
                cookie.chmod(0o400)
            self.nodes.append(node)

    # -- addresses -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The node list: each node's AMQP URL, separated by ';' (what --url / AMQP_URL take)."""
        return ";".join(node.url for node in self.nodes)

    def node(self, number: int) -> LocalBroker:
        """Node `number`, counted from 1."""
        if not 1 <= number <= len(self.nodes):
            raise BrokerError(f"there is no node {number}: the cluster has nodes 1 to {len(self.nodes)}")
        return self.nodes[number - 1]

    def number_of(self, nodename: str) -> int:
        """The number of the node named `nodename` (as rabbitmqctl and the management API name it)."""
        for number, node in enumerate(self.nodes, 1):
            if node.nodename == nodename:
                return number
        raise BrokerError(f"no node named {nodename} in this cluster")

    # -- lifecycle -------------------------------------------------------------------
    def start(self, timeout: float = 180) -> None:
        """Start every node (in parallel) and join nodes 2.. to node 1; idempotent."""
        self._parallel(lambda node: self._boot(node, timeout))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            if first.nodename in self.members(node):
                continue
            for args in (("stop_app",), ("join_cluster", first.nodename), ("start_app",)):
                result = node.ctl(*args, timeout=timeout)
                if result.returncode != 0:
                    raise BrokerError(f"{node.nodename}: rabbitmqctl {' '.join(args)} failed: "
                                      f"{result.stderr.strip() or result.stdout.strip()}\n{node.tail_log()}")
        self.wait_members(len(self.nodes), timeout)

    def members(self, node: LocalBroker | None = None) -> list[str]:
        """The running nodes of the cluster as `node` (default: the first running one) sees them."""
        candidates = [node] if node is not None else [n for n in self.nodes if n.running()]
        for candidate in candidates:
            result = candidate.ctl("eval", "rabbit_nodes:all_running().", timeout=30)
            if result.returncode == 0:
                return [name.strip(" '[]\n") for name in result.stdout.split(",") if name.strip(" '[]\n")]
        return []

    def wait_members(self, count: int, timeout: float = 120) -> None:
        """Wait until `count` nodes run in the cluster."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.members()) >= count:
                return
            time.sleep(0.5)
        raise BrokerError(f"the cluster did not reach {count} running nodes within {timeout:.0f}s "
                          f"(running: {self.members()})\n{self.nodes[0].tail_log()}")

    def online_members(self, queue: str) -> int:
        """How many members of the quorum queue `queue` are online, as a running node reports them (0 when
        none answers or the queue does not exist yet). A member still starting cannot vote: a leader
        killed before every member is online may leave the queue without a majority."""
        for node in self.nodes:
            if node.running():
                result = node.ctl("list_queues", "name", "online", "--formatter", "json", timeout=30)
                if result.returncode == 0:
                    rows = {row["name"]: row.get("online") or [] for row in json.loads(result.stdout or "[]")}
                    return len(rows.get(queue, []))
        return 0

    def leader_of(self, queue: str) -> int:
        """The number of the node leading the quorum queue `queue`, as a running node reports it."""
        for node in self.nodes:
            if node.running():
                result = node.ctl("list_queues", "name", "leader", "--formatter", "json", timeout=30)
                if result.returncode == 0:
                    leaders = {row["name"]: row["leader"] for row in json.loads(result.stdout or "[]")}
                    if queue in leaders:
                        return self.number_of(leaders[queue])
        raise AssertionError(f"no running node names the leader of {queue}")

    def stop(self) -> None:
        """Stop every node gracefully."""
        self._parallel(lambda node: node.stop())

    def kill(self, number: int) -> None:
        """SIGKILL node `number`: a crash."""
        self.node(number).kill()

    def stop_node(self, number: int) -> None:
        """Stop node `number` gracefully."""
        self.node(number).stop()

    def start_node(self, number: int, timeout: float = 120) -> None:
        """Start node `number` again; it rejoins the cluster it belongs to."""
        self._boot(self.node(number), timeout)

    def _boot(self, node: LocalBroker, timeout: float) -> None:
        """Start `node`, and start it again when its VM died while booting (a crash, not a slow start).

        RabbitMQ 3.10 can crash a node that syncs its feature flags with a peer still booting
        (`incompatible_feature_flags ... {badmap,undefined}` in the log): a whole-cluster start in
        parallel meets it now and then. Started again once its peers are further on, it boots."""
        deadline = time.monotonic() + timeout
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            try:
                node.start(timeout=deadline - time.monotonic())
                return
            except NotStarted as exc:
                # Only a VM that is gone is booted again: one still there is slow, and a second launch
                # under its name would fight it. The start's own deadline holds across the attempts.
                if attempt == BOOT_ATTEMPTS or node.vm_pids() or deadline - time.monotonic() < 30:
                    raise
                LOGGER.warning("%s died while booting (attempt %d); starting it again: %s",
                               node.nodename, attempt, str(exc).splitlines()[0])

    @contextlib.contextmanager
    def partition(self, number: int, timeout: float = 120):
        """Cut node `number` off the other nodes' Erlang distribution (iptables DROP on loopback, both
        directions, open and new connections; AMQP and rabbitmqctl untouched) until the block ends, then
        heal: the rules always go, and the block returns once the cluster is whole again. Meanwhile the
        cluster runs with pause_minority (as the compose and Kubernetes layouts do), so the cut-off
        node pauses and closes its clients' connections, and resumes by itself after the heal."""
        if shutil.which("iptables") is None:
            raise BrokerError("partition needs iptables (apt-get install -y iptables) and root")
        cut = self.node(number)
        others = [(n, node) for n, node in enumerate(self.nodes, 1) if n != number]
        chain = f"ripc-part-{cut.dist_port}"
        rules = []
        for other, node in others:
            for source, port in ((dist_source(number), node.dist_port), (dist_source(other), cut.dist_port)):
                rules.append(["-s", source, "-d", "127.0.0.1", "--dport", str(port)])
                rules.append(["-s", "127.0.0.1", "--sport", str(port), "-d", source])
        self._set_partition_handling("pause_minority", PARTITION_TICKTIME)
        try:
            _iptables("-N", chain)
            for rule in rules:
                _iptables("-A", chain, "-p", "tcp", *rule, "-j", "DROP")
            _iptables("-I", "OUTPUT", "-o", "lo", "-j", chain)
            self._wait(lambda: cut.nodename not in self.members(others[0][1]), timeout,
                       f"the other nodes to see node {number} gone")
            yield
        finally:
            _iptables("-D", "OUTPUT", "-o", "lo", "-j", chain, check=False)
            _iptables("-F", chain, check=False)
            _iptables("-X", chain, check=False)
        self._wait(lambda: cut.running() and len(self.members(others[0][1])) == len(self.nodes)
                   and not self.partitions(), timeout, f"node {number} back in the cluster")
        self._set_partition_handling("ignore", 60)

    def partitions(self) -> list[str]:
        """The nodes any running node reports a partition with (rabbit_node_monitor:partitions())."""
        found = []
        for node in self.nodes:
            result = node.ctl("eval", "rabbit_node_monitor:partitions().", timeout=30)
            if result.returncode == 0:
                found += [name.strip(" '[]\n") for name in result.stdout.split(",") if name.strip(" '[]\n")]
        return found

    def _set_partition_handling(self, mode: str, ticktime: int) -> None:
        for node in self.nodes:
            node.ctl("eval", f"application:set_env(rabbit, cluster_partition_handling, {mode}), "
                             f"net_kernel:set_net_ticktime({ticktime}, 0).", timeout=30)

    def _wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise BrokerError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.nodes[0].tail_log()}")

    def _parallel(self, action) -> None:
        errors: list[BaseException] = []

        def run(node: LocalBroker) -> None:
            try:
                action(node)
            except (BrokerError, subprocess.TimeoutExpired) as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(node,)) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0] if isinstance(errors[0], BrokerError) else BrokerError(str(errors[0]))


def _iptables(*args: str, check: bool = True) -> None:
    result = subprocess.run(["iptables", "-w", "10", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise BrokerError(f"iptables {' '.join(args)} failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devtools.localcluster",
        description="Run a private 3-node RabbitMQ cluster from the system's rabbitmq-server; "
                    "kill, stop or start one node to watch the clients move to another.",
    )
    parser.add_argument("action", choices=["start", "stop", "status", "url", "kill", "stop-node", "start-node"])
    parser.add_argument("node", nargs="?", type=int, help="kill, stop-node, start-node: the node number (1-3)")
    parser.add_argument("--dir", default=".rabbitmq-cluster", help="cluster directory (default: .rabbitmq-cluster)")
    args = parser.parse_args(argv)
    if args.action in ("kill", "stop-node", "start-node") and args.node is None:
        parser.error(f"{args.action} needs a node number (1-{SIZE})")
    cluster = LocalCluster(args.dir)
    return run_action("localcluster", lambda: _act(cluster, args))


def _act(cluster: LocalCluster, args: argparse.Namespace) -> int:
    """One command-line action on the cluster; its exit code."""
    if args.action == "start":
        cluster.start()
        print(cluster.url)
    elif args.action == "stop":
        cluster.stop()
    elif args.action == "status":
        for number, node in enumerate(cluster.nodes, 1):
            state = "running" if node.running() else "stopped"
            print(f"node {number}: {node.nodename} amqp {node.amqp_port} "
                  f"management {node.management_url} {state}")
    elif args.action == "url":
        print(cluster.url)
    elif args.action == "kill":
        cluster.kill(args.node)
        print(f"node {args.node} killed (SIGKILL); start it again with: "
              f"python3 -m devtools.localcluster start-node {args.node} --dir {args.dir}")
    elif args.action == "stop-node":
        cluster.stop_node(args.node)
        print(f"node {args.node} stopped")
    else:
        cluster.start_node(args.node)
        print(f"node {args.node} running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
