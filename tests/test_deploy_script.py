"""deploy-local-minikube.sh, driven with stand-in minikube and kubectl commands that record their calls.

The script's real run needs a minikube cluster (see the smoke test's cluster tier); these tests
check its logic: tool checks, build, apply, rollout wait, logs on failure, --delete.
"""

import os
import subprocess

from support import ROOT

SCRIPT = ROOT / "deploy-local-minikube.sh"

# Stand-in minikube and kubectl: they record their calls; minikube keeps an image store in a file, so a
# build that "succeeds" without producing its image (BUILD_BROKEN=1) is seen as minikube's would be.
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in
  *"image build"*)
    [ -n "${BUILD_BROKEN:-}" ] && { echo "ERROR: failed to solve" >&2; exit 0; }
    echo "docker.io/library/$(echo "$*" | sed 's/.* -t \\([^ ]*\\) .*/\\1/')" >> "$IMAGES" ;;
  *"image ls"*) cat "$IMAGES" 2>/dev/null ;;
  *"image tag"*) echo "docker.io/library/$(echo "$*" | awk '{print $NF}')" >> "$IMAGES" ;;
  *"get -k"*) printf '%s\\n' ${OBJECTS:-service/rabbitipc deployment.apps/rabbitipc} ;;
  *"rollout status"*) exit "${ROLLOUT_RC:-0}" ;;
  *"get pod "*"uid"*)
    [ -n "${NO_POD:-}" ] && exit 1
    if [ -e "$UIDS" ]; then echo uid-new; else echo uid-old; touch "$UIDS"; fi ;;
  *"wait --for=condition=Ready"*) exit "${READY_RC:-0}" ;;
  *"logs deployment/rabbitipc-sender --tail=-1"*)
    n=$(cat "$SENT" 2>/dev/null | wc -l)
    echo "T INFO rabbitipc.programs.sender: sent seq=$((n+1)) id=m$((n+1)) bytes=1 payload=x" >> "$SENT"
    cat "$SENT" ;;
  *"logs -l app.kubernetes.io/component=receiver --tail=-1"*)
    sed -n 's/.* sent seq=\\([0-9]*\\) id=\\([^ ]*\\) .*/T INFO r: received seq=\\1 id=\\2 latency_ms=1.0/p' "$SENT" \\
      | grep -v "id=${LOSE:-none} "
    [ -n "${TWICE:-}" ] && echo "T INFO r: received seq=1 id=m1 latency_ms=1.0" ;;
  *"logs"*) echo "LOG LINES FROM THE POD" ;;
  *"].port}"*) echo 15672 ;;
  *"nodePort"*) echo "${NODE_PORT:-}" ;;
  *" ip"*) echo 192.168.49.2 ;;
  *"service "*) sleep 30 ;;
esac
exit 0
"""


def run_script(tmp_path, *args, tools=("minikube", "kubectl"), **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    environment = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", CALLS=str(calls),
                       IMAGES=str(tmp_path / "images"), UIDS=str(tmp_path / "uids"), SENT=str(tmp_path / "sent"),
                       **env)
    result = subprocess.run([str(SCRIPT), *args], cwd=ROOT, env=environment, capture_output=True,
                            text=True, timeout=60)
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_missing_minikube_is_named_with_where_to_get_it(tmp_path):
    """Without minikube the script stops at once with one clear line and exit 1."""
    result, calls = run_script(tmp_path, tools=("kubectl",))
    assert result.returncode == 1
    assert "minikube is not installed" in result.stderr
    assert calls == []


def test_deploy_builds_both_images_applies_and_waits_for_the_rollout(tmp_path):
    """Both images are built inside minikube, checked, tagged with the version, the overlay applied, the
    rollout awaited; every kubectl call names the minikube profile's context."""
    result, calls = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    for role in ("sender", "receiver"):
        build = next(c for c in calls if "image build" in c and f"Dockerfile-{role}" in c)
        assert f"-t rabbitipc-{role}:0.1.0-build-" in build
        assert any(c.startswith(f"minikube --profile minikube image tag rabbitipc-{role}:0.1.0-build-")
                   and c.endswith(f" rabbitipc-{role}:0.1.0") for c in calls)
    assert any("apply -k k8s/overlays/minikube" in call for call in calls)
    assert any("rollout status deployment.apps/rabbitipc --timeout 300s" in call for call in calls)
    assert all("--context minikube" in call for call in calls if call.startswith("kubectl"))
    assert "kubectl --context minikube logs -f deployment/rabbitipc -c receiver" in result.stdout


def test_a_build_that_reports_success_without_an_image_stops_the_deploy(tmp_path):
    """minikube image build exits 0 on a failed build: the script sees the missing image and stops before apply."""
    result, calls = run_script(tmp_path, BUILD_BROKEN="1")
    assert result.returncode == 1
    assert "building rabbitipc-sender:0.1.0 failed" in result.stderr
    assert not any("apply" in call for call in calls)


def test_a_failed_rebuild_does_not_pass_for_the_previous_image(tmp_path):
    """An image left from an earlier deploy under the version tag does not hide a failed build."""
    (tmp_path / "images").write_text("".join(f"docker.io/library/rabbitipc-{role}:0.1.0\n"
                                             for role in ("sender", "receiver")))
    result, calls = run_script(tmp_path, BUILD_BROKEN="1")
    assert result.returncode == 1, result.stdout
    assert not any("apply" in call for call in calls)


def test_another_minikube_profile_is_used_for_every_call(tmp_path):
    """RABBITIPC_MINIKUBE_PROFILE: minikube runs with --profile, kubectl with that profile's context."""
    result, calls = run_script(tmp_path, RABBITIPC_MINIKUBE_PROFILE="dev")
    assert result.returncode == 0, result.stderr
    assert all(call.startswith("minikube --profile dev ") for call in calls if call.startswith("minikube"))
    assert all(" --context dev " in f" {call} " for call in calls if call.startswith("kubectl"))
    assert '--context dev --namespace default' in result.stdout


def test_the_end_never_runs_minikube_service_and_names_the_real_service(tmp_path):
    """`minikube service --url` blocks on macOS/Windows docker drivers: not used; the port-forward hint
    names the Service the layout has, plus the NodePort URL when there is one."""
    result, calls = run_script(tmp_path, NODE_PORT="31234")
    assert result.returncode == 0, result.stderr
    assert not any(" service " in f" {call} " for call in calls if call.startswith("minikube"))
    assert "port-forward service/rabbitipc 15672" in result.stdout
    assert "http://192.168.49.2:31234/" in result.stdout
    scaled, _ = run_script(tmp_path, RABBITIPC_OVERLAY="k8s/scaled",
                           OBJECTS="service/rabbitipc-rabbitmq deployment.apps/rabbitipc-rabbitmq "
                                   "deployment.apps/rabbitipc-receiver deployment.apps/rabbitipc-sender")
    assert scaled.returncode == 0, scaled.stderr
    assert "port-forward service/rabbitipc-rabbitmq 15672" in scaled.stdout
    assert "http://192.168" not in scaled.stdout


def test_failed_rollout_prints_the_pod_logs_and_exits_1(tmp_path):
    """When the rollout does not finish in time, the script shows the pods' logs and fails."""
    result, _ = run_script(tmp_path, ROLLOUT_RC="1", RABBITIPC_ROLLOUT_TIMEOUT="5")
    assert result.returncode == 1
    assert "did not become available within 5s" in result.stderr
    assert "LOG LINES FROM THE POD" in result.stderr


def test_delete_removes_what_the_overlay_created(tmp_path):
    """--delete deletes the overlay's objects and builds nothing."""
    result, calls = run_script(tmp_path, "--delete")
    assert result.returncode == 0, result.stderr
    assert any("delete -k k8s/overlays/minikube --ignore-not-found" in call for call in calls)
    assert not any("image build" in call for call in calls)


CLUSTER_OBJECTS = ("service/rabbitipc-rabbitmq statefulset.apps/rabbitipc-rabbitmq deployment.apps/rabbitipc-receiver "
                   "deployment.apps/rabbitipc-sender")


def test_the_cluster_layout_waits_for_its_nodes_without_restarting_them(tmp_path):
    """RABBITIPC_OVERLAY=k8s/cluster: the broker StatefulSet's rollout is awaited but never restarted (its image
    is not rebuilt), the programs' Deployments are; the end names --kill-broker; --delete removes the nodes'
    claims, which outlive the StatefulSet."""
    result, calls = run_script(tmp_path, RABBITIPC_OVERLAY="k8s/cluster", OBJECTS=CLUSTER_OBJECTS)
    assert result.returncode == 0, result.stderr
    assert any("rollout status statefulset.apps/rabbitipc-rabbitmq" in call for call in calls)
    assert not any("rollout restart statefulset" in call for call in calls)
    assert any("rollout restart deployment.apps/rabbitipc-sender" in call for call in calls)
    assert "./deploy-local-minikube.sh --kill-broker" in result.stdout
    deleted, calls = run_script(tmp_path, "--delete", RABBITIPC_OVERLAY="k8s/cluster")
    assert deleted.returncode == 0, deleted.stderr
    assert any("delete pvc -l app.kubernetes.io/component=broker-data" in call for call in calls)


def test_kill_broker_deletes_a_node_under_traffic_and_counts_lost_and_twice(tmp_path):
    """--kill-broker deletes rabbitipc-rabbitmq-0, waits for a new Pod ready while the sender sends on, then
    reports 0 lost, 0 handled twice; a message never received, or received twice, is an error (exit 1) with the
    Pods listed; no deployed Pod is a one-line error."""
    result, calls = run_script(tmp_path, "--kill-broker", RABBITIPC_OVERLAY="k8s/cluster")
    assert result.returncode == 0, result.stderr
    assert any("delete pod rabbitipc-rabbitmq-0 --wait=false" in call for call in calls)
    assert not any("image build" in call or " apply " in call for call in calls)
    assert "0 lost, 0 handled twice" in result.stderr

    for name in ("uids", "sent"):
        (tmp_path / name).unlink()
    lost, _ = run_script(tmp_path, "--kill-broker", LOSE="m1", RABBITIPC_ROLLOUT_TIMEOUT="3")
    assert lost.returncode == 1 and "1 messages sent were not received within 3s" in lost.stderr, lost.stderr
    assert "get pods -l app.kubernetes.io/part-of=rabbitipc" in (tmp_path / "calls").read_text()

    for name in ("uids", "sent"):
        (tmp_path / name).unlink()
    twice, _ = run_script(tmp_path, "--kill-broker", TWICE="1")
    assert twice.returncode == 1 and "1 messages were handled twice" in twice.stderr, twice.stderr

    absent, _ = run_script(tmp_path, "--kill-broker", NO_POD="1")
    assert absent.returncode == 1 and "no Pod rabbitipc-rabbitmq-0" in absent.stderr


def test_make_smoke_creates_the_virtualenv_it_runs_from():
    """`make smoke` first makes sure .venv exists (nothing else on the Kubernetes path creates it), then runs
    devtools.smoke from it."""
    dry = subprocess.run(["make", "-n", "smoke"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = dry.stdout.splitlines()
    assert "ensure_venv" in lines[0] and "bin/python -m devtools.smoke kubernetes" in lines[-1], dry.stdout
    real = subprocess.run(["make", "smoke", "SMOKE_ARGS=--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, RABBITIPC_VENV=str(ROOT / ".venv")))
    assert real.returncode == 0, real.stderr
    assert "--context" in real.stdout


def test_cluster_tier_installs_no_local_broker(tmp_path):
    """`./run-tests.sh --cluster -m cluster` needs no rabbitmq-server and does not apt-install it; the
    ordinary run does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg-query"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/calls"\nexit 1\n')
        (bin_dir / tool).chmod(0o755)
    packages = tmp_path / "system-packages.txt"  # the list, with a rabbitmq-server that is not there
    packages.write_text(f"run {tmp_path / 'absent' / 'rabbitmq-server'} rabbitmq-server the broker\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", RABBITIPC_SYSTEM_PACKAGES=str(packages))
    cluster = subprocess.run(["./run-tests.sh", "--cluster", "-m", "cluster", "--collect-only", "-q",
                              "tests/test_cluster_smoke.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert cluster.returncode == 0, cluster.stdout + cluster.stderr
    assert not (tmp_path / "calls").exists()
    ordinary = subprocess.run(["./run-tests.sh", "--collect-only", "-q", "tests/test_message.py"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
    assert "rabbitmq-server" in (tmp_path / "calls").read_text(), ordinary.stderr


def test_cluster_tier_timeout_leaves_room_for_the_scenario():
    """The cluster test's own pytest timeout exceeds the scenario's wait, so a slow rollout ends in the
    report, not in pytest-timeout's kill."""
    import tomllib

    import test_cluster_smoke

    default = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["timeout"]
    (marker,) = [m for m in test_cluster_smoke.pytestmark if m.name == "timeout"]
    assert marker.args[0] >= 3 * test_cluster_smoke.WAIT > default
