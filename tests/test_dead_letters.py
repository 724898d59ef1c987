"""rabbitipc-ctl dead: list, replay and purge the messages handlers refused, parked in <queue>.dead."""

from __future__ import annotations

import subprocess
import sys

from rabbitipc.errors import EXIT_NOT_FOUND, EXIT_USAGE
from support import RECEIVED, ROOT, SENT, admin_channel_call, get_all, program_env, publish_raw, queue_depth, wait_until


def ctl(broker, *args):
    return subprocess.run([sys.executable, "-m", "rabbitipc.programs.ctl", "dead", *args], cwd=ROOT,
                          env=program_env(broker.url), capture_output=True, text=True, timeout=60)


def park(run, broker, queue, *batches: tuple[str, int]) -> dict[str, list[str]]:
    """A receiver whose handler always fails parks each batch (payload, count); returns payload -> ids."""
    receiver = run("receiver", "--handler", "slow_handler:always_fail", "--max-attempts", "1")
    receiver.wait_for_line("consuming from queue")
    ids = {}
    for payload, count in batches:
        sender = run("sender", "--message", payload, "--count", str(count))
        assert sender.wait(60) == 0, sender.output
        ids[payload] = sender.ids(SENT)
    total = sum(count for _, count in batches)
    wait_until(lambda: queue_depth(broker.url, queue + ".dead") == total, 30, f"{total} parked")
    receiver.stop()
    return ids


def listed_ids(result) -> list[str]:
    return [line.split()[0].removeprefix("id=") for line in result.stdout.splitlines() if line.startswith("id=")]


def test_list_shows_each_dead_letter_with_its_reason_and_leaves_them_in_order(run, broker, queue):
    """list prints id, seq, attempts, age and reason per message; the queue keeps them all, in order."""
    ids = park(run, broker, queue, ("alpha", 3))["alpha"]
    first = ctl(broker, "list", "--queue", queue)
    assert first.returncode == 0, first.stderr
    assert listed_ids(first) == ids
    lines = [line for line in first.stdout.splitlines() if line.startswith("id=")]
    assert all(" seq=" in line and " attempts=1 " in line and " age=" in line and "cannot handle alpha" in line
               for line in lines), first.stdout
    assert queue_depth(broker.url, queue + ".dead") == 3
    again = ctl(broker, "list", "--queue", queue, "--limit", "2")
    assert again.returncode == 0, again.stderr
    assert listed_ids(again) == ids[:2]
    assert listed_ids(ctl(broker, "list", "--queue", queue)) == ids
    assert queue_depth(broker.url, queue + ".dead") == 3


def test_replay_dry_run_changes_nothing(run, broker, queue):
    """replay --dry-run names what it would move and leaves both queues as they were."""
    ids = park(run, broker, queue, ("alpha", 2))["alpha"]
    result = ctl(broker, "replay", "--queue", queue, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2 would be replayed" in result.stdout
    assert all(message_id in result.stdout for message_id in ids)
    assert queue_depth(broker.url, queue + ".dead") == 2
    assert queue_depth(broker.url, queue) == 0


def test_replay_by_reason_moves_only_matching_ones_and_each_is_handled_once(run, broker, queue):
    """replay --reason alpha: the alpha messages go back to the queue (the rest stay parked) and a
    receiver whose handler now works handles each of them once."""
    ids = park(run, broker, queue, ("alpha", 3), ("beta", 2))
    result = ctl(broker, "replay", "--queue", queue, "--reason", "alpha")
    assert result.returncode == 0, result.stderr
    assert "3 replayed" in result.stdout
    assert queue_depth(broker.url, queue + ".dead") == 2
    assert listed_ids(ctl(broker, "list", "--queue", queue)) == ids["beta"]
    receiver = run("receiver")
    receiver.wait_count(RECEIVED, 3)
    assert sorted(receiver.ids(RECEIVED)) == sorted(ids["alpha"])
    assert queue_depth(broker.url, queue) == 0


def test_replay_filters_by_id_and_age(run, broker, queue):
    """--older-than selects by the time since sending, --id by message id; others stay parked."""
    ids = park(run, broker, queue, ("alpha", 3))["alpha"]
    none = ctl(broker, "replay", "--queue", queue, "--older-than", "3600")
    assert none.returncode == 0 and "0 replayed" in none.stdout, none.stdout + none.stderr
    one = ctl(broker, "replay", "--queue", queue, "--id", ids[1], "--older-than", "0")
    assert one.returncode == 0 and "1 replayed" in one.stdout, one.stdout + one.stderr
    assert [properties.message_id for properties, _ in get_all(broker.url, queue)] == [ids[1]]
    assert listed_ids(ctl(broker, "list", "--queue", queue)) == [ids[0], ids[2]]


def test_replayed_message_goes_back_without_the_dead_letter_headers(run, broker, queue):
    """A replayed message keeps its id and body; its reason and origin headers are gone."""
    park(run, broker, queue, ("alpha", 1))
    parked = ctl(broker, "list", "--queue", queue)
    assert ctl(broker, "replay", "--queue", queue).returncode == 0
    [(properties, body)] = get_all(broker.url, queue)
    assert properties.message_id == listed_ids(parked)[0] and b"alpha" in body
    assert not {"x-rabbitipc-reason", "x-rabbitipc-queue"} & set(properties.headers or {})


def test_replay_drops_the_stage_hop_count_so_a_max_hops_letter_is_not_parked_again(run, broker, queue):
    """A letter parked for exceeding --max-hops (it carries the stage's hop header) is replayed without it."""
    from rabbitipc.consume.stage import HOPS_HEADER

    park(run, broker, queue, ("alpha", 1))
    [(properties, body)] = get_all(broker.url, queue + ".dead")
    publish_raw(broker.url, queue + ".dead", body, message_id=properties.message_id,
                headers={**(properties.headers or {}), HOPS_HEADER: 5}, delivery_mode=2)
    assert ctl(broker, "replay", "--queue", queue).returncode == 0
    [(replayed, replayed_body)] = get_all(broker.url, queue)
    assert replayed.message_id == properties.message_id and replayed_body == body
    assert HOPS_HEADER not in (replayed.headers or {})


def test_replaying_the_same_ids_twice_is_handled_once(run, broker, queue):
    """A replay repeated for the same ids (what a replay killed between confirm and ack leaves):
    the receiver's dedupe window drops the copies, each message is handled once."""
    park(run, broker, queue, ("alpha", 3))
    copies = get_all(broker.url, queue + ".dead")

    def park_copies() -> None:
        for properties, body in copies:
            publish_raw(broker.url, queue + ".dead", body, message_id=properties.message_id,
                        headers=properties.headers, delivery_mode=2)

    park_copies()
    receiver = run("receiver")
    receiver.wait_for_line("consuming from queue")
    assert ctl(broker, "replay", "--queue", queue).returncode == 0
    receiver.wait_count(RECEIVED, 3)
    park_copies()
    assert ctl(broker, "replay", "--queue", queue).returncode == 0
    receiver.wait_for_line("already handled", count=3)
    wait_until(lambda: queue_depth(broker.url, queue) == 0, 10, "the work queue drained")
    assert sorted(receiver.ids(RECEIVED)) == sorted(properties.message_id for properties, _ in copies)


def test_purge_needs_yes_then_empties_the_dead_letter_queue(run, broker, queue):
    """purge without --yes is a usage error that deletes nothing; with --yes it empties <queue>.dead."""
    park(run, broker, queue, ("alpha", 2))
    refused = ctl(broker, "purge", "--queue", queue)
    assert refused.returncode == EXIT_USAGE and "--yes" in refused.stderr
    assert queue_depth(broker.url, queue + ".dead") == 2
    done = ctl(broker, "purge", "--queue", queue, "--yes")
    assert done.returncode == 0 and "2 purged" in done.stdout, done.stdout + done.stderr
    assert queue_depth(broker.url, queue + ".dead") == 0


def test_a_missing_queue_is_a_one_line_error_with_its_own_exit_code(broker, queue):
    """list, replay and purge of a queue that does not exist: one line naming it, exit EXIT_NOT_FOUND."""
    for args in (["list"], ["replay"], ["replay", "--dry-run"], ["purge", "--yes"]):
        result = ctl(broker, *args, "--queue", queue)
        assert result.returncode == EXIT_NOT_FOUND, (args, result.stderr)
        assert result.stderr.strip().splitlines() == [f"rabbitipc-ctl: error: queue '{queue}.dead' does not exist"]


def test_replay_to_a_deleted_work_queue_is_an_error_that_keeps_the_dead_letters(run, broker, queue):
    """replay when the work queue is gone: exit EXIT_NOT_FOUND naming it, nothing leaves <queue>.dead."""
    park(run, broker, queue, ("alpha", 2))
    admin_channel_call(broker.url, lambda channel: channel.queue_delete(queue))
    result = ctl(broker, "replay", "--queue", queue)
    assert result.returncode == EXIT_NOT_FOUND
    assert result.stderr.strip() == f"rabbitipc-ctl: error: queue '{queue}' does not exist"
    assert queue_depth(broker.url, queue + ".dead") == 2
