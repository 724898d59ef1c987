"""A stand-in Kubernetes API server, just enough for the smoke test's KubernetesDriver.

It answers the REST reads the driver makes (Pods, the Deployment, a Secret) and speaks the
port-forward websocket protocol (v4.channel.k8s.io: per port a data and an error channel, each
opened by a frame carrying the port number; then binary frames whose first byte is the channel).
Each port-forward is played from `forwards`, a list of modes taken in order (the last repeats):

    "answer"   reply to the forwarded HTTP request with `management_reply`, then drop the websocket's
               connection (as the API server does when the Pod closes the connection)
    "refuse"   send the kubelet's error on the error channel and close, as for a Pod port nobody
               listens on
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
POD = "rabbitipc-5d9c7b6f4-abcde"
REFUSED = (f"error forwarding port 15672 to pod 1234abcd, uid : failed to execute portforward in network namespace "
           f"\"/var/run/netns/cni-1\": failed to connect to localhost:15672 inside namespace \"{POD}\", "
           "IPv4: dial tcp 127.0.0.1:15672: connect: connection refused")


def _frame(payload: bytes, opcode: int = 2) -> bytes:
    """A server-to-client websocket frame (unmasked)."""
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([len(payload)])
    elif len(payload) < 65536:
        head += bytes([126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([127]) + struct.pack(">Q", len(payload))
    return head + payload


def _read_frame(stream) -> tuple[int, bytes]:
    """A client-to-server frame (masked): (opcode, payload)."""
    first, second = stream.read(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", stream.read(2))
    elif length == 127:
        (length,) = struct.unpack(">Q", stream.read(8))
    mask = stream.read(4) if second & 0x80 else b"\0\0\0\0"
    data = stream.read(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class FakeKubeAPI:
    """Serve on a free localhost port; `kubeconfig(path)` writes a kubeconfig pointing at it."""

    def __init__(self, forwards=("answer",), management_reply: dict | None = None) -> None:
        self.forwards = list(forwards)
        self.forward_requests = 0
        self.management_reply = management_reply if management_reply is not None else {"name": "hello"}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path, context: str = "fake") -> str:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return str(path)

    # -- what the API serves ------------------------------------------------------------------
    def _objects(self, path: str):
        pod = {"metadata": {"name": POD, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": {"containers": [{"name": "rabbitmq", "image": "rabbitmq:3-management"}]},
               "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                          "containerStatuses": [{"name": "rabbitmq", "image": "rabbitmq:3-management",
                                                 "imageID": "", "ready": True, "restartCount": 0}]}}
        env = [{"name": "RABBITMQ_DEFAULT_USER",
                "valueFrom": {"secretKeyRef": {"name": "rabbitipc-credentials", "key": "username"}}},
               {"name": "RABBITMQ_DEFAULT_PASS",
                "valueFrom": {"secretKeyRef": {"name": "rabbitipc-credentials", "key": "password"}}}]
        deployment = {"metadata": {"name": "rabbitipc", "namespace": "default"},
                      "spec": {"selector": {"matchLabels": {"app": "x"}},
                               "template": {"spec": {"containers": [
                                   {"name": "rabbitmq", "image": "rabbitmq:3-management", "env": env}]}}},
                      "status": {"conditions": [{"type": "Available", "status": "True"}]}}
        secret = {"metadata": {"name": "rabbitipc-credentials"},
                  "data": {k: base64.b64encode(v).decode() for k, v in
                           {"username": b"rabbitipc-admin", "password": b"admin-dev-password"}.items()}}
        if path == "/api/v1/namespaces/default/pods":
            return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}
        if path.startswith("/apis/apps/v1/namespaces/default/deployments/rabbitipc"):
            return deployment
        if path == "/api/v1/namespaces/default/secrets/rabbitipc-credentials":
            return secret
        return None

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path = urlsplit(self.path).path
                if path.endswith("/portforward") and self.headers.get("Upgrade", "").lower() == "websocket":
                    api._port_forward(self)
                    return
                body = api._objects(path)
                data = json.dumps(body if body is not None else {"kind": "Status", "code": 404}).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _port_forward(self, handler: BaseHTTPRequestHandler) -> None:
        mode = self.forwards[min(self.forward_requests, len(self.forwards) - 1)]
        self.forward_requests += 1
        accept = base64.b64encode(hashlib.sha1((handler.headers["Sec-WebSocket-Key"] + GUID).encode()).digest())
        handler.send_response(101, "Switching Protocols")
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept.decode())
        handler.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        handler.end_headers()
        out = handler.wfile
        port = struct.pack("<H", 15672)
        out.write(_frame(b"\0" + port) + _frame(b"\1" + port))
        out.flush()
        if mode == "refuse":
            out.write(_frame(b"\1" + REFUSED.encode()))
        else:
            request = b""
            while b"\r\n\r\n" not in request:
                opcode, payload = _read_frame(handler.rfile)
                if opcode == 2 and payload[:1] == b"\0":
                    request += payload[1:]
            body = json.dumps(self.management_reply).encode()
            out.write(_frame(b"\0" + b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body))
        out.flush()
        if mode == "answer":
            # The answer has gone through the relay before the stream ends. (A client that gets the
            # drop in the same instant as the data may discard the data: kubernetes 37 does.)
            time.sleep(1.0)
        # The connection ends without a close frame, as when the API server drops a finished stream:
        # clients before kubernetes 32.0 lose their proxy thread here and never signal EOF.
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
