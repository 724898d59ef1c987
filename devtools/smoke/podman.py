"""Play the rendered Kubernetes bundle with podman, and drive the smoke scenario against it.

`podman kube play` runs a Deployment's Pod for real: the same images, env, probes and shared
localhost. Where podman 4.x differs from a cluster, this module adapts the rendered
manifests mechanically and says so here, rather than changing the bundle:
- Secrets: podman resolves secretKeyRef against podman secrets holding the data as JSON,
  so each rendered Secret becomes one (`podman secret create`).
- Services are ignored by podman; instead each containerPort gets a free hostPort, which is
  how the scenario reaches the management API (as a port-forward would on a cluster).
- Probes: podman turns exec liveness probes into healthchecks but ignores readiness; the
  driver runs each readiness probe itself, exec in the container or TCP to the port.
- The Deployment gets a unique name, so a run never touches a user's own pods.
- restartPolicy becomes OnFailure: podman 4.3 applies the Pod's Always to init containers
  and restarts a finished one forever. (The driver restarts a killed broker itself.)
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import yaml

from ..localbroker import free_port

LOGGER = logging.getLogger(__name__)


def podman(*args: str, check: bool = True, timeout: float = 120, input_text: str | None = None) -> str:
    """Run a podman command and return its stdout; raise with stderr on failure."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                            input=input_text, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


class PodmanBundle:
    """One rendered bundle (the documents of `kubectl kustomize k8s/base`) played by podman."""

    def __init__(self, documents: list[dict], name: str | None = None) -> None:
        self.documents = [copy.deepcopy(doc) for doc in documents if doc]
        deployments = [doc for doc in self.documents if doc["kind"] == "Deployment"]
        if len(deployments) != 1:
            raise ValueError(f"expected one Deployment in the bundle, found {len(deployments)}")
        self.deployment = deployments[0]
        self.name = name or f"{self.deployment['metadata']['name']}-e2e-{uuid.uuid4().hex[:6]}"
        self.deployment["metadata"]["name"] = self.name
        self.pod_spec["restartPolicy"] = "OnFailure"
        self.secrets = {doc["metadata"]["name"]: doc for doc in self.documents if doc["kind"] == "Secret"}
        self.host_ports: dict[str, int] = {}
        self.pod = f"{self.name}-pod-0"
        self._volumes: list[str] = []

    @property
    def pod_spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    def container(self, name: str) -> dict:
        return next(c for c in self.pod_spec["containers"] if c["name"] == name)

    def container_id(self, name: str) -> str:
        return f"{self.pod}-{name}"

    def secret_value(self, secret: str, key: str) -> str:
        doc = self.secrets[secret]
        if key in doc.get("stringData", {}):
            return doc["stringData"][key]
        return base64.b64decode(doc["data"][key]).decode()

    def up(self) -> None:
        """Create the secrets and play the Deployment; its Pod starts at once."""
        for name, doc in self.secrets.items():
            data = dict(doc.get("data", {}))
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in doc.get("stringData", {}).items()})
            podman("secret", "rm", name, check=False)
            podman("secret", "create", name, "-", input_text=json.dumps(data))
        for container in self.pod_spec["containers"]:
            for port in container.get("ports", []):
                port["hostPort"] = self.host_ports.setdefault(port.get("name") or str(port["containerPort"]),
                                                              free_port())
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump(self.deployment, handle)
            path = handle.name
        try:
            LOGGER.info("podman kube play %s (pod %s)", path, self.pod)
            podman("kube", "play", path, timeout=300)
        finally:
            os.unlink(path)
        for container in self.pod_spec["containers"]:
            out = podman("inspect", self.container_id(container["name"]), "--format",
                         "{{range .Mounts}}{{.Name}} {{end}}", check=False)
            self._volumes += out.split()

    def down(self) -> None:
        """Remove the Pod, its volumes and the secrets created for it."""
        podman("pod", "rm", "--force", "--time", "10", self.pod, check=False, timeout=120)
        for volume in self._volumes:
            podman("volume", "rm", "--force", volume, check=False)
        for name in self.secrets:
            podman("secret", "rm", name, check=False)


class PodmanDriver:
    """The smoke scenario's driver for a PodmanBundle that is up."""

    def __init__(self, bundle: PodmanBundle) -> None:
        self.bundle = bundle

    def describe(self) -> str:
        return f"podman pod {self.bundle.pod}"

    def _state(self, container: str) -> str:
        return podman("inspect", self.bundle.container_id(container), "--format", "{{.State.Status}}",
                      check=False).strip()

    def _probe_passes(self, container: dict) -> bool:
        probe = container.get("readinessProbe")
        if not probe:
            return True
        if "exec" in probe:
            result = subprocess.run(["podman", "exec", self.bundle.container_id(container["name"]),
                                     *probe["exec"]["command"]], capture_output=True, timeout=60, check=False)
            return result.returncode == 0
        if "tcpSocket" in probe:
            port = probe["tcpSocket"]["port"]
            host_port = self.bundle.host_ports[str(port)]
            try:
                with socket.create_connection(("127.0.0.1", host_port), timeout=2):
                    return True
            except OSError:
                return False
        raise ValueError(f"unsupported readiness probe in {container['name']}: {probe}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting: list[str] = []
        while time.monotonic() < deadline:
            waiting = [c["name"] for c in self.bundle.pod_spec["containers"]
                       if self._state(c["name"]) != "running" or not self._probe_passes(c)]
            if not waiting:
                return
            time.sleep(1)
        raise TimeoutError(f"containers not ready after {timeout:.0f}s: {', '.join(waiting)}")

    def logs(self, container: str) -> str:
        result = subprocess.run(["podman", "logs", self.bundle.container_id(container)],
                                capture_output=True, text=True, timeout=60, check=False)
        return result.stdout + result.stderr

    def _credentials(self) -> tuple[str, str]:
        env = {e["name"]: e for e in self.bundle.container("rabbitmq").get("env", [])}
        values = []
        for name in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            values.append(self.bundle.secret_value(ref["name"], ref["key"]))
        return values[0], values[1]

    def management_get(self, path: str):
        user, password = self._credentials()
        request = urllib.request.Request(f"http://127.0.0.1:{self.bundle.host_ports['management']}{path}")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def restart_broker(self) -> None:
        """SIGKILL the RabbitMQ container, then start it again as the kubelet would."""
        container = self.bundle.container_id("rabbitmq")
        podman("kill", "--signal", "KILL", container)
        deadline = time.monotonic() + 60
        while self._state("rabbitmq") == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        podman("start", container)

    def signal_pod(self, timeout: int = 60) -> None:
        """Stop the Pod as Kubernetes does: SIGTERM to every container, SIGKILL after the grace period."""
        podman("pod", "stop", "--time", str(timeout), self.bundle.pod, timeout=timeout + 60)
