"""The smoke scenario's driver for a real cluster, through the official kubernetes client."""

from __future__ import annotations

import base64
import json
import time

try:
    from kubernetes import client, config
    from kubernetes.stream import portforward, stream
except ImportError as exc:  # the client is an extra: pip install 'rabbitipc[kubernetes]'
    raise ImportError("the smoke test needs the kubernetes client: pip install 'rabbitipc[kubernetes]'") from exc

SELECTOR = "app.kubernetes.io/name=rabbitipc,app.kubernetes.io/component=ipc"


class KubernetesDriver:
    """Finds the rabbitipc Deployment's Pod and talks to it through the API server."""

    def __init__(self, namespace: str = "default", deployment: str = "rabbitipc",
                 selector: str = SELECTOR, context: str | None = None) -> None:
        try:
            config.load_kube_config(context=context)
        except config.ConfigException:
            config.load_incluster_config()
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
        """GET through a port-forward to the pod's 15672, as `kubectl port-forward` would."""
        user, password = self._credentials()
        forward = portforward(self.core.connect_get_namespaced_pod_portforward, self._pod().metadata.name,
                              self.namespace, ports="15672")
        try:
            sock = forward.socket(15672)
            sock.setblocking(True)
            sock.settimeout(15)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Basic {token}\r\n"
                         "Accept: application/json\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            sock.close()
        finally:
            forward.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"management API answered {status} for {path}")
        return json.loads(body)

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
