"""The smoke scenario's driver for a real cluster, through the official kubernetes client."""

from __future__ import annotations

import base64
import json
import logging
import os
import time

import yaml

try:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import portforward, stream
except ImportError as exc:  # the client is an extra: pip install 'rabbitipc[kubernetes]'
    raise ImportError("the smoke test needs the kubernetes client: pip install 'rabbitipc[kubernetes]'") from exc

LOGGER = logging.getLogger(__name__)

SELECTOR = "app.kubernetes.io/name=rabbitipc,app.kubernetes.io/component=ipc"
#: Port-forward attempts per management request, and the pause before each retry (seconds).
FORWARD_ATTEMPTS = 3
FORWARD_RETRY_DELAY = 1.0


class ClusterConfigError(RuntimeError):
    """No usable kubeconfig (or context), and not running inside a cluster."""


class PortForwardError(RuntimeError):
    """The cluster refused or broke a port-forward; the message is the cluster's own."""


def load_config(context: str | None = None) -> None:
    """Load the kubeconfig (its current context, or `context`); inside a Pod with no kubeconfig,
    the in-cluster configuration. A bad kubeconfig or unknown context is reported as such."""
    path = os.environ.get("KUBECONFIG") or "~/.kube/config"  # read now, not when kubernetes was imported
    try:
        config.load_kube_config(config_file=path, context=context)
        return
    except (config.ConfigException, OSError, yaml.YAMLError) as exc:
        problem = exc
    if context is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.path.exists(os.path.expanduser(path)):
        config.load_incluster_config()
        return
    where = f"kubeconfig {path}" + (f", context {context!r}" if context else "")
    raise ClusterConfigError(f"cannot use the {where}: {problem}") from problem


class KubernetesDriver:
    """Finds the rabbitipc Deployment's Pod and talks to it through the API server."""

    def __init__(self, namespace: str = "default", deployment: str = "rabbitipc",
                 selector: str = SELECTOR, context: str | None = None) -> None:
        load_config(context)
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.namespace = namespace
        self.deployment = deployment
        self.selector = selector

    def describe(self) -> str:
        return f"deployment {self.namespace}/{self.deployment}"

    # -- pod discovery ---------------------------------------------------------------------
    def _pod(self):
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        live = [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
        if not live:
            raise LookupError(f"no running pod with labels {self.selector} in {self.namespace}")
        return max(live, key=lambda p: p.metadata.creation_timestamp)

    def _available(self) -> bool:
        status = self.apps.read_namespaced_deployment_status(self.deployment, self.namespace).status
        return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])

    def _pod_ready(self) -> bool:
        try:
            pod = self._pod()
        except LookupError:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._available() and self._pod_ready():
                return
            time.sleep(2)
        raise TimeoutError(f"{self.describe()} not available with a ready pod after {timeout:.0f}s")

    # -- what the scenario reads --------------------------------------------------------------
    def logs(self, container: str) -> str:
        return self.core.read_namespaced_pod_log(self._pod().metadata.name, self.namespace, container=container)

    def _credentials(self) -> tuple[str, str]:
        """The broker user, from the Secret the rabbitmq container's env points at."""
        spec = self.apps.read_namespaced_deployment(self.deployment, self.namespace).spec.template.spec
        rabbit = next(c for c in spec.containers if c.name == "rabbitmq")
        env = {e.name: e for e in rabbit.env or []}
        values = []
        for name in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"):
            ref = env[name].value_from.secret_key_ref
            secret = self.core.read_namespaced_secret(ref.name, self.namespace)
            values.append(base64.b64decode(secret.data[ref.key]).decode())
        return values[0], values[1]

    def management_get(self, path: str):
        """GET through a port-forward to the pod's 15672, as `kubectl port-forward` would; a refused or
        broken forward is retried (FORWARD_ATTEMPTS in all), then reported with the cluster's error."""
        user, password = self._credentials()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = (f"GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Basic {token}\r\n"
                   "Accept: application/json\r\nConnection: close\r\n\r\n").encode()
        for attempt in range(1, FORWARD_ATTEMPTS + 1):
            try:
                response = self._forward_once(request)
                break
            except (PortForwardError, ApiException, OSError) as exc:
                if attempt == FORWARD_ATTEMPTS:
                    raise PortForwardError(f"port-forward to 15672 failed {attempt} times, last: {exc}") from exc
                LOGGER.warning("port-forward to 15672 failed (attempt %s of %s): %s", attempt, FORWARD_ATTEMPTS, exc)
                time.sleep(FORWARD_RETRY_DELAY * attempt)
        head, _, body = response.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"management API answered {status} for {path}")
        return json.loads(body)

    def _forward_once(self, request: bytes) -> bytes:
        """One port-forward, one HTTP request, the whole response (read to EOF)."""
        forward = portforward(self.core.connect_get_namespaced_pod_portforward, self._pod().metadata.name,
                              self.namespace, ports="15672")
        chunks = []
        try:
            sock = forward.socket(15672)
            sock.setblocking(True)
            sock.settimeout(15)
            sock.sendall(request)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            sock.close()
        except OSError as exc:  # reset when the cluster closed the forward first: its error says why
            error = forward.error(15672)
            raise PortForwardError(error.strip() if error else f"{exc.__class__.__name__}: {exc}") from exc
        finally:
            forward.close()
        response = b"".join(chunks)
        if not response.startswith(b"HTTP/") or b" " not in response.partition(b"\r\n")[0]:
            error = forward.error(15672)
            raise PortForwardError(error.strip() if error else "the forwarded connection closed without an answer")
        return response

    def restart_broker(self) -> None:
        """Stop the RabbitMQ node; its container exits and the kubelet restarts it."""
        pod = self._pod()
        before = next(s.restart_count for s in pod.status.container_statuses if s.name == "rabbitmq")
        stream(self.core.connect_get_namespaced_pod_exec, pod.metadata.name, self.namespace,
               container="rabbitmq", command=["rabbitmqctl", "stop"], stderr=True, stdout=True,
               stdin=False, tty=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pod = self._pod()
            now = next(s.restart_count for s in pod.status.container_statuses if s.name == "rabbitmq")
            if now > before:
                return
            time.sleep(2)
        raise TimeoutError("the rabbitmq container did not restart within 120s")
