"""The smoke test's Kubernetes driver against a stand-in API server (tests/fake_kube_api.py): the
port-forward to the management API, its failures, and loading the kubeconfig. No cluster needed."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("kubernetes")

from devtools.smoke import cli, kube  # noqa: E402
from fake_kube_api import FakeKubeAPI  # noqa: E402


@pytest.fixture
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(kube, "FORWARD_RETRY_DELAY", 0.0)


def driver_for(api, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", api.kubeconfig(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return kube.KubernetesDriver()


def test_management_answer_arrives_when_the_server_closes_the_websocket(tmp_path, monkeypatch):
    """The API server closing the port-forward websocket ends the response at once (clients before 32.0
    never saw EOF and waited out the 15 s socket timeout)."""
    with FakeKubeAPI(management_reply={"name": "hello", "consumers": 1}) as api:
        driver = driver_for(api, tmp_path, monkeypatch)
        started = time.monotonic()
        assert driver.management_get("/api/queues/%2F/hello") == {"name": "hello", "consumers": 1}
        assert time.monotonic() - started < 5


def test_a_refused_forward_is_retried(tmp_path, monkeypatch, no_retry_delay):
    """One refused port-forward (the broker not listening yet) does not fail the check: the next attempt answers."""
    with FakeKubeAPI(forwards=["refuse", "answer"]) as api:
        driver = driver_for(api, tmp_path, monkeypatch)
        assert driver.management_get("/api/queues/%2F/hello") == {"name": "hello"}
        assert api.forward_requests == 2


def test_a_forward_refused_every_time_reports_the_clusters_error(tmp_path, monkeypatch, no_retry_delay):
    """After the last attempt the error says what the cluster said (no IndexError)."""
    with FakeKubeAPI(forwards=["refuse"]) as api:
        driver = driver_for(api, tmp_path, monkeypatch)
        with pytest.raises(kube.PortForwardError, match="connection refused") as caught:
            driver.management_get("/api/queues/%2F/hello")
        assert f"failed {kube.FORWARD_ATTEMPTS} times" in str(caught.value)
        assert api.forward_requests == kube.FORWARD_ATTEMPTS


def test_an_unknown_context_is_named_not_taken_for_in_cluster(tmp_path, monkeypatch, capsys):
    """--context that the kubeconfig lacks: one line naming it and the kubeconfig, exit 1; never the
    in-cluster loader's "Service host/port is not set"."""
    with FakeKubeAPI() as api:
        monkeypatch.setenv("KUBECONFIG", api.kubeconfig(tmp_path / "kubeconfig"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        with pytest.raises(kube.ClusterConfigError, match="context 'nope'"):
            kube.KubernetesDriver(context="nope")
        assert cli.main(["kubernetes", "--context", "nope", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "ClusterConfigError" in err and "'nope'" in err and str(tmp_path / "kubeconfig") in err
    assert "Service host/port" not in err


def test_a_broken_kubeconfig_is_reported_as_such(tmp_path, monkeypatch):
    """A kubeconfig that does not parse is named in the error, even where KUBERNETES_SERVICE_HOST is set."""
    broken = tmp_path / "kubeconfig"
    broken.write_text("this: [is not a kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(kube.ClusterConfigError, match=str(broken)):
        kube.KubernetesDriver()
