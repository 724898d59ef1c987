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
- ConfigMaps are passed with `--configmap` (podman reads them for envFrom and configMapKeyRef).
- PersistentVolumeClaims: podman mounts the named volume called like the claim; the claim gets
  a name unique to the run and the volume is created beforehand, so it outlives the Pod until
  `down()` (`replace_pod()` plays a new Pod on the same data, as a rollout would).
- resourceFieldRef naming another container: podman 4.3 resolves it against the container's
  own resources (the node's memory for an init container without limits), so the value the
  named container's limit gives is written in instead.
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
        self.config_maps = [doc for doc in self.documents if doc["kind"] == "ConfigMap"]
        self.claims: dict[str, str] = {}
        for volume in self.pod_spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                claim["claimName"] = self.claims.setdefault(claim["claimName"], f"{claim['claimName']}-{self.name}")
        self._resolve_resource_fields()
        self.host_ports: dict[str, int] = {}
        self.pod = f"{self.name}-pod-0"
        self._volumes: list[str] = []

    @property
    def pod_spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    def _resolve_resource_fields(self) -> None:
        """Write in the values of resourceFieldRefs that name another container (see the module notes)."""
        spec = self.pod_spec
        by_name = {c["name"]: c for c in spec["containers"] + spec.get("initContainers", [])}
        for container in by_name.values():
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("resourceFieldRef")
                if ref and ref.get("containerName", container["name"]) != container["name"]:
                    kind, _, resource = ref["resource"].partition(".")
                    quantity = by_name[ref["containerName"]]["resources"][kind][resource]
                    var.pop("valueFrom")
                    var["value"] = str(_bytes(quantity) if resource == "memory" else quantity)

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
        for volume in self.claims.values():
            if subprocess.run(["podman", "volume", "exists", volume], check=False).returncode != 0:
                podman("volume", "create", volume)
            self._volumes.append(volume)
        self._play()

    def _play(self) -> None:
        # Each Pod a new hostname, as on a cluster (the Pod's name): the broker's data must not
        # depend on it.
        self.pod_spec["hostname"] = f"{self.name}-{uuid.uuid4().hex[:5]}"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "deployment.yaml")
            with open(path, "w") as handle:
                yaml.safe_dump(self.deployment, handle)
            options = []
            for index, config_map in enumerate(self.config_maps):
                options += ["--configmap", os.path.join(tmp, f"configmap-{index}.yaml")]
                with open(options[-1], "w") as handle:
                    yaml.safe_dump(config_map, handle)
            LOGGER.info("podman kube play %s (pod %s)", path, self.pod)
            podman("kube", "play", *options, path, timeout=300)
        for container in self.pod_spec["containers"]:
            out = podman("inspect", self.container_id(container["name"]), "--format",
                         "{{range .Mounts}}{{.Name}} {{end}}", check=False)
            self._volumes += [volume for volume in out.split() if volume not in self._volumes]

    def replace_pod(self, timeout: int = 60) -> dict[str, str]:
        """Stop the Pod (SIGTERM, then SIGKILL after timeout), delete it and play a new one on the same
        claims, as a rollout or a Pod deletion does on a cluster; the new Pod has another hostname.
        Returns the old Pod's logs by container name."""
        podman("pod", "stop", "--time", str(timeout), self.pod, timeout=timeout + 120)
        logs = {}
        for container in self.pod_spec["containers"]:
            result = subprocess.run(["podman", "logs", self.container_id(container["name"])], capture_output=True,
                                    text=True, timeout=60, check=False)
            logs[container["name"]] = result.stdout + result.stderr
        podman("pod", "rm", "--force", self.pod, timeout=120)
        self._play()
        return logs

    def down(self) -> None:
        """Remove the Pod, its volumes and the secrets created for it."""
        podman("pod", "rm", "--force", "--time", "10", self.pod, check=False, timeout=120)
        for volume in self._volumes:
            podman("volume", "rm", "--force", volume, check=False)
        for name in self.secrets:
            podman("secret", "rm", name, check=False)


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity ("1Gi", "512M", "1048576") in bytes."""
    text = str(quantity)
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


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
