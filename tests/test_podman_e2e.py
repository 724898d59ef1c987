"""End to end: the real images from the unmodified Dockerfiles, the rendered base played by podman,
and the same smoke scenario users run against minikube, broker restart and Pod replacement included."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter

import pytest
import yaml

from devtools.smoke.podman import PodmanBundle, PodmanDriver, podman
from devtools.smoke.scenario import RECEIVED, SENT, ids, smoke
from support import FAULT_MATRIX, ROOT, wait_until

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(shutil.which("podman") is None,
                       reason="podman is not installed (./scripts/install-podman.sh installs it)"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is needed to render k8s/base"),
    pytest.mark.timeout(1200),
]

IMAGES = {"sender": "rabbitipc-sender:0.1.0", "receiver": "rabbitipc-receiver:0.1.0"}
BASES = ("docker.io/library/python:3.11-slim", "docker.io/library/rabbitmq:3-management")


@pytest.fixture(scope="module", autouse=True)
def containers_conf():
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "scripts" / "podman" / "containers.conf"))


@pytest.fixture(scope="module")
def images(containers_conf):
    """Base images (local stand-ins where no registry answers), then both images from their Dockerfiles."""
    missing = [image for image in BASES if subprocess.run(["podman", "image", "exists", image]).returncode]
    if missing:
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            pytest.skip(f"base images {missing} missing and no root+debootstrap to build stand-ins")
        result = subprocess.run([str(ROOT / "scripts" / "podman-standins.sh")], capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    for role, tag in IMAGES.items():
        result = subprocess.run(["podman", "build", "-q", "-f", f"Dockerfile-{role}", "-t", tag, "."],
                                cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
    return IMAGES


@pytest.fixture
def bundle(images):
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "base")], capture_output=True,
                              text=True, check=True, timeout=60).stdout
    played = PodmanBundle(list(yaml.safe_load_all(rendered)))
    played.up()
    yield played
    played.down()


def test_images_run_as_non_root_with_exec_entrypoints(images):
    """Both images start the program itself (exec form) as a numeric non-root user, labelled with their name."""
    for role, tag in images.items():
        config = yaml.safe_load(podman("image", "inspect", tag, "--format", "{{json .Config}}"))
        assert config["User"] == "10001:10001"
        assert config["Labels"]["org.opencontainers.image.title"] == f"rabbitipc-{role}"
        assert config["Labels"]["org.opencontainers.image.description"] == \
            f"rabbitipc {role}: Python IPC over RabbitMQ"
        assert config["Entrypoint"] == [f"rabbitipc-{'send' if role == 'sender' else 'receive'}"]
        assert "PYTHONUNBUFFERED=1" in config["Env"]
        out = subprocess.run(["podman", "run", "--rm", tag, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "exit codes:" in out.stdout


def test_played_pod_passes_the_smoke_scenario_with_a_broker_restart(bundle):
    """Messages flow, the management API shows the queue with a consumer, and a killed broker loses nothing."""
    driver = PodmanDriver(bundle)
    report = smoke(driver, min_messages=5, timeout=240, restart_broker=True)
    assert report.ok, report.render()
    users = {user["name"] for user in driver.management_get("/api/users")}
    assert users == {"rabbitipc-admin", "rabbitipc-sender", "rabbitipc-receiver", "rabbitipc-chat",
                     "rabbitipc-listener"}, "definitions loaded, no guest"


def test_pod_stop_is_graceful(bundle):
    """SIGTERM to the Pod: both programs log their clean stop and exit 0, nothing accepted lost."""
    driver = PodmanDriver(bundle)
    driver.wait_ready(240)
    smoke_report = smoke(driver, min_messages=3, timeout=240)
    assert smoke_report.ok, smoke_report.render()
    driver.signal_pod(timeout=60)
    for role in ("sender", "receiver"):
        code = podman("inspect", bundle.container_id(role), "--format", "{{.State.ExitCode}}").strip()
        assert code == "0", driver.logs(role)[-3000:]
        assert "stopped by SIGTERM" in driver.logs(role)
    accepted = set(ids(SENT, driver.logs("sender")))
    unreceived = accepted - set(ids(RECEIVED, driver.logs("receiver")))
    # What was accepted but not yet received at the stop must still be in the durable queue.
    podman("start", bundle.container_id("rabbitmq"))
    queue = wait_until(lambda: _ready_queue(driver), 120, "the queue after the broker restarted")
    assert queue["messages"] == len(unreceived), (queue["messages"], unreceived)


def _ready_queue(driver):
    """The queue's management record once its message counts are in (stats lag a start)."""
    try:
        queue = driver.management_get("/api/queues/%2F/hello")
    except OSError:
        return None
    return queue if queue and "messages" in queue else None


def test_queued_messages_survive_the_pod_being_replaced(bundle):
    """Messages queued while the receiver is down are still there when the Pod is deleted and a new one
    (another hostname) starts on the same claim: the new receiver gets every one the old sender had accepted."""
    driver = PodmanDriver(bundle)
    driver.wait_ready(240)
    receiver = bundle.container_id("receiver")
    podman("stop", "--time", "30", receiver)
    assert podman("inspect", receiver, "--format", "{{.State.Status}}").strip() == "exited"
    before = len(ids(SENT, driver.logs("sender")))

    def state() -> str:
        queue = _ready_queue(driver)
        return (f"receiver {podman('inspect', receiver, '--format', '{{.State.Status}}', check=False).strip()}, "
                f"queue {queue}\nsender log:\n{driver.logs('sender')[-2000:]}")

    # Confirmed by the broker while nobody consumes: in the durable queue.
    wait_until(lambda: len(ids(SENT, driver.logs("sender"))) >= before + 20, 180,
               "the sender to have 20 messages confirmed with the receiver stopped", state)
    old = bundle.replace_pod()
    accepted = set(ids(SENT, old["sender"]))
    queued = accepted - set(ids(RECEIVED, old["receiver"]))
    assert len(queued) >= 20, "the old Pod's sender accepted messages its receiver never got"
    driver.wait_ready(240)

    def missing():
        return queued - set(ids(RECEIVED, driver.logs("receiver")))

    wait_until(lambda: not missing(), 180, "the new receiver to get every queued message")
    handled = Counter(i for i in ids(RECEIVED, old["receiver"]) + ids(RECEIVED, driver.logs("receiver"))
                      if i in accepted)
    FAULT_MATRIX.append(("Pod replaced (podman, same claim)", len(accepted), len(handled),
                         len(accepted - set(handled)), sum(n - 1 for n in handled.values()), 0))
    (node,) = driver.management_get("/api/nodes")
    assert node["name"] == "rabbit@localhost", "the node name does not follow the Pod's hostname"


def test_broker_memory_alarm_follows_the_container_limit(bundle):
    """The broker's memory high watermark is 0.4 of what it is told it has: its container limit less headroom."""
    driver = PodmanDriver(bundle)
    driver.wait_ready(240)
    # The node's figures appear in the management API a few seconds after it answers.
    nodes = wait_until(lambda: [n for n in driver.management_get("/api/nodes") if "mem_limit" in n], 60,
                       "the broker node's memory figures in the management API")
    available = int(2**30 * 0.8)  # the rabbitmq container's 1Gi limit, less 20% headroom
    assert abs(nodes[0]["mem_limit"] - 0.4 * available) <= 1, nodes[0]["mem_limit"]

