"""The smoke test against a real cluster (minikube after ./deploy-local-minikube.sh).

A marked tier: run with `./run-tests.sh --cluster -m cluster`; skipped otherwise.
"""

import pytest

from devtools.smoke.scenario import smoke

pytestmark = pytest.mark.cluster


def test_deployed_bundle_passes_the_smoke_scenario():
    """The Deployment in the current kubeconfig is ready and messages flow through it."""
    from devtools.smoke.kube import KubernetesDriver

    report = smoke(KubernetesDriver(), min_messages=5, timeout=300)
    assert report.ok, report.render()
