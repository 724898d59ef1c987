"""Stopping many consumers: one control command stops them all; a poison pill stops one."""

import subprocess
import sys

from devtools.localbroker import free_port
from rabbitipc.errors import EXIT_USAGE
from support import RECEIVED, ROOT, SENT, admin_channel_call, program_env, publish_raw, queue_depth, wait_until


def listed_exit_codes(help_text: str) -> list[int]:
    """The codes of the 'exit codes:' table at the end of a --help."""
    table = help_text.split("exit codes:", 1)[1]
    return [int(line.split()[0]) for line in table.splitlines() if line.strip()]


def ctl(broker, *args, url=None):
    return subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", *args], cwd=ROOT,
                          env=program_env(url or broker.url), capture_output=True, text=True, timeout=30)


def test_one_command_stops_every_receiver_of_a_queue(run, broker, queue):
    """rabbitipc-ctl stop --queue Q: all three receivers finish, ack, exit 0; the rest stays queued."""
    receivers = [run("receiver", "--prefetch", "5", "--handler", "slow_handler:handle") for _ in range(3)]
    for receiver in receivers:
        receiver.wait_for_line("consuming from queue")
    sender = run("sender", "--count", "300", "--rate", "0")
    assert sender.wait(60) == 0, sender.output
    wait_until(lambda: sum(len(r.ids(RECEIVED)) for r in receivers) >= 10, 30, "some messages handled")
    result = ctl(broker, "stop", "--queue", queue)
    assert result.returncode == 0, result.stderr
    for receiver in receivers:
        assert receiver.wait(15) == 0, receiver.output
        assert "requested through the control exchange" in receiver.output
    handled = sum(len(r.ids(RECEIVED)) for r in receivers)
    assert handled < 300
    wait_until(lambda: queue_depth(broker.url, queue) == 300 - handled, 10, "the unhandled rest in the queue")
    assert len(sender.ids(SENT)) == 300


def test_stop_for_a_queue_nobody_consumes_says_so(broker, queue):
    """A command no receiver listens to is reported with exit 1, not silently lost."""
    result = ctl(broker, "stop", "--queue", queue)
    assert result.returncode == 1
    assert "no receiver of" in result.stderr


def test_poison_pill_stops_only_the_receiver_that_gets_it(run, broker, queue):
    """--poison-pill: the one receiver that takes the pill acks it and exits 0; the other goes on."""
    first = run("receiver", "--poison-pill", "STOP", "--prefetch", "1")
    second = run("receiver", "--poison-pill", "STOP", "--prefetch", "1")
    first.wait_for_line("consuming from queue")
    second.wait_for_line("consuming from queue")
    sender = run("sender", "--message", "STOP", "--count", "1")
    assert sender.wait() == 0
    wait_until(lambda: first.proc.poll() is not None or second.proc.poll() is not None, 15, "one receiver stopped")
    stopped, running = (first, second) if first.proc.poll() is not None else (second, first)
    assert stopped.wait() == 0 and "poison pill received" in stopped.output
    assert running.proc.poll() is None
    assert queue_depth(broker.url, queue) == 0


def test_status_shows_programs_and_queues_from_the_metrics_numbers(broker, run, queue, tmp_path):
    """`rabbitipc-ctl status` prints, per program, its node, connection, counts and latency (from its health
    file), and per queue the backlog, consumers and dead letters (from the broker)."""
    from support import publish_raw

    health = tmp_path / "receiver-health"
    receiver = run("receiver", "--health-file", str(health), "--strict")
    receiver.wait_for_line("consuming from queue")
    run("sender", "--count", "5", "--rate", "0").wait_for_line("sender done")
    publish_raw(broker.url, queue, b"not ours")  # dead-lettered (--strict)
    receiver.wait_count(RECEIVED, 5)
    receiver.wait_for_line("dead-lettered")

    def screen() -> str:
        result = ctl(broker, "status", "--health-file", str(health))
        assert result.returncode == 0, result.stderr
        return result.stdout

    text = wait_until(lambda: (lambda out: out if " 5 " in out and "yes" in out else None)(screen()), 15,
                      "the health file's numbers", on_timeout=screen)
    (program_line,) = [line for line in text.splitlines() if line.startswith("receiver")]
    fields = program_line.split()
    assert fields[1] == queue and fields[2].startswith("127.0.0.1:") and fields[3] == "yes"
    assert fields[4:7] == ["5", "1", "0"]  # handled, dead-lettered, duplicates
    assert float(fields[9]) > 0  # p99 latency
    (queue_line,) = [line for line in text.splitlines() if line.startswith(queue) and "receiver" not in line]
    assert queue_line.split()[1:] == ["0", "1", "1"]  # backlog, consumers, dead letters


def test_status_with_a_node_list_asks_the_node_that_answers(broker, queue):
    """status with AMQP_URL a node list (a closed port first): the queue numbers come from the node that answers."""
    admin_channel_call(broker.url, lambda channel: channel.queue_declare(queue, durable=True))
    for _ in range(2):
        publish_raw(broker.url, queue, b"waiting", delivery_mode=2)
    closed = broker.url.replace(f":{broker.amqp_port}/", f":{free_port()}/")
    result = ctl(broker, "status", "--queue", queue, url=f"{closed};{broker.url}")
    assert result.returncode == 0 and "not asked" not in result.stderr, result.stderr
    (queue_line,) = [line for line in result.stdout.splitlines() if line.startswith(queue)]
    assert queue_line.split()[1:] == ["2", "0", "-"]  # backlog, consumers, no dead-letter queue


def test_a_bad_amqp_url_is_a_one_line_usage_error_for_stop_and_dead(broker, queue):
    """stop and dead list with an invalid AMQP_URL: one line on stderr, exit EXIT_USAGE, no traceback."""
    for args in (["stop", "--queue", queue], ["dead", "list", "--queue", queue]):
        result = ctl(broker, *args, url="amqp://a;")
        assert result.returncode == EXIT_USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1, result.stderr


def test_help_lists_exactly_the_exit_codes_each_command_returns():
    """rabbitipc-ctl --help and dead --help list each code they can return once, and no other (no 8, 9)."""
    env = program_env("amqp://guest:guest@127.0.0.1:1/%2F")
    helps = {}
    for args in (["--help"], ["dead", "--help"]):
        result = subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert listed_exit_codes(result.stdout) == [0, 1, 2, 3, 4, 6, 7, 10], (args, result.stdout)
        helps[args[0]] = result.stdout.split("exit codes:", 1)[1]
    assert "  1  no receiver listening" in helps["--help"]  # ctl's own meaning of 1


def test_ca_file_and_url_are_checked_as_in_the_other_programs(broker, queue, tmp_path):
    """rabbitipc-ctl's --ca-file and RABBITIPC_CA_FILE are the programs' own options: a CA file that
    cannot be read is a one-line usage error (exit 2) naming it, for stop, status and dead alike (before,
    ctl took any text and failed later, at the TLS handshake)."""
    missing = str(tmp_path / "no-such-ca.pem")
    for args in (["stop", "--queue", queue, "--ca-file", missing], ["status", "--queue", queue, "--ca-file", missing],
                 ["dead", "list", "--queue", queue, "--ca-file", missing]):
        result = ctl(broker, *args)
        assert result.returncode == EXIT_USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr and "no-such-ca.pem" in result.stderr, result.stderr
    env = {**program_env(broker.url), "RABBITIPC_CA_FILE": missing}
    result = subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "stop", "--queue", queue], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_USAGE and "RABBITIPC_CA_FILE" in result.stderr, result.stderr

