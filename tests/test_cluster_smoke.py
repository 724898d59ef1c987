"""The smoke test against a real cluster (minikube after ./deploy-local-minikube.sh).

A marked tier: run with `./run-tests.sh --cluster -m cluster`; skipped otherwise.
"""

import pytest

from devtools.smoke.scenario import smoke

#: Seconds per wait of the scenario (rollout, messages); the test's own limit leaves room for
#: several such waits and the report (pytest-timeout's default of 300 s would cut the first short).
WAIT = 300
TEST_TIMEOUT = 4 * WAIT

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(TEST_TIMEOUT)]


def test_deployed_bundle_passes_the_smoke_scenario():
    """The Deployment in the current kubeconfig is ready and messages flow through it."""
    from devtools.smoke.kube import KubernetesDriver

    report = smoke(KubernetesDriver(), min_messages=5, timeout=WAIT)
    assert report.ok, report.render()
