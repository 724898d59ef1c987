"""deploy-local-minikube.sh, driven with stand-in minikube and kubectl commands that record their calls.

The script's real run needs a minikube cluster (see the smoke test's cluster tier); these tests
check its logic: tool checks, build, apply, rollout wait, logs on failure, --delete.
"""

import os
import subprocess

from support import ROOT

SCRIPT = ROOT / "deploy-local-minikube.sh"

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$*" in
  *"get -k"*) echo deployment.apps/rabbitipc ;;
  *"rollout status"*) exit "${ROLLOUT_RC:-0}" ;;
  *"logs"*) echo "LOG LINES FROM THE POD" ;;
  *"service rabbitipc"*) echo http://192.168.49.2:31234 ;;
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
    environment = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", CALLS=str(calls), **env)
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
    """Both images are built inside minikube, the overlay applied, the rollout awaited."""
    result, calls = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "minikube image build -t rabbitipc-sender:0.1.0 -f Dockerfile-sender ." in calls
    assert "minikube image build -t rabbitipc-receiver:0.1.0 -f Dockerfile-receiver ." in calls
    assert any("apply -k k8s/overlays/minikube" in call for call in calls)
    assert any("rollout status deployment.apps/rabbitipc --timeout 300s" in call for call in calls)
    assert "kubectl logs -f deployment/rabbitipc -c receiver" in result.stdout
    assert "http://192.168.49.2:31234" in result.stdout


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
