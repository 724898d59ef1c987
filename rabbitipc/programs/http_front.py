"""An HTTP front for the sender: web apps POST work, the broker keeps it (seed: Flask producer).

`POST /messages` with a JSON body publishes it as one message (the JSON text is the payload)
with a publisher confirm, then answers 202 with the message id: the work is safely queued.
503 while the broker cannot take it (the client should retry), 400 for malformed JSON or a
body over the size limit, 404 elsewhere. Standard library only (http.server), one publisher
shared under a lock, heartbeats serviced between requests.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import EXIT_AUTH, EXIT_TLS, FatalError, Stopped
from ..loglines import SENT_VIA_HTTP_LINE
from ..message import Stamper, printable
from ..publish.blocking import Publisher

LOGGER = logging.getLogger(__name__)
#: Seconds a request waits for the shared publisher before it is answered 503.
LOCK_WAIT = 2.0


class MessageServer(ThreadingHTTPServer):
    """The HTTP server, holding the shared publisher and its lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], publisher: Publisher, max_size: int) -> None:
        super().__init__(address, RequestHandler)
        self.publisher = publisher
        self.max_size = max_size
        self.lock = threading.Lock()
        self.stamp = Stamper()
        #: A refusal retrying cannot fix (credentials, permissions, TLS): serve() stops and raises it.
        self.fatal: FatalError | None = None

    def publish(self, payload: str) -> tuple[int, dict]:
        """Publish one payload; return (HTTP status, JSON answer).

        A request that cannot take the publisher within LOCK_WAIT seconds (another one is waiting
        out a broker outage) gets 503 at once instead of queueing behind it.
        """
        if not self.lock.acquire(timeout=LOCK_WAIT):
            return 503, {"error": "the broker cannot take messages now: busy with an earlier request; retry later"}
        try:
            message = self.stamp(payload)
            try:
                routed = self.publisher.publish(message.body(), message.properties())
            except FatalError as exc:
                if exc.exit_code in (EXIT_AUTH, EXIT_TLS):
                    # 503 for ever would hide a configuration error: stop, and exit with its code.
                    self.fatal = exc
                    self.publisher.stop.set(f"fatal: {exc}")
                    return 503, {"error": f"the broker refused: {exc}"}
                LOGGER.warning("not accepted id=%s: %s", message.id, exc)
                return 503, {"error": f"the broker cannot take messages now: {exc}; retry later"}
            except Stopped as exc:
                LOGGER.warning("not accepted id=%s: %s", message.id, exc or "stopping")
                return 503, {"error": f"the broker cannot take messages now: {exc or 'stopping'}; retry later"}
        finally:
            self.lock.release()
        if not routed:
            return 503, {"error": f"no queue is bound to {self.publisher.route.describe}; retry later"}
        LOGGER.info(SENT_VIA_HTTP_LINE, message.seq, message.id, len(payload))
        return 202, {"id": message.id, "seq": message.seq}


class RequestHandler(BaseHTTPRequestHandler):
    """POST /messages; everything else is 404."""

    server: MessageServer
    protocol_version = "HTTP/1.1"
    #: Seconds a client may take to send a request line, headers or body: a stalled client is disconnected.
    timeout = 10

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/messages":
            self._answer(404, {"error": "POST JSON to /messages"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(400, {"error": "Content-Length required"})
            return
        if length < 0:
            self.close_connection = True  # the body is not read: the connection cannot carry another request
            self._answer(400, {"error": f"invalid Content-Length {length}"})
            return
        if length > self.server.max_size:
            self.close_connection = True
            self._answer(400, {"error": f"body of {length} bytes exceeds the {self.server.max_size}-byte limit"})
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._answer(400, {"error": f"malformed JSON: {exc}"})
            return
        self._answer(*self.server.publish(json.dumps(body, ensure_ascii=False, separators=(",", ":"))))

    def do_GET(self) -> None:  # noqa: N802
        self._answer(404, {"error": "POST JSON to /messages"})

    def _answer(self, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        # The request line is the client's text: escaped, it can neither forge a log line nor reach a terminal.
        LOGGER.info("http %s %s", self.address_string(), printable(format % args, 300))


def serve(publisher: Publisher, address: tuple[str, int], max_size: int = 1024 * 1024) -> None:
    """Serve until the publisher's stop flag is set; heartbeats are serviced between requests.

    Raises the FatalError of refused credentials or permissions or a failed TLS handshake
    (exit 3 or 7), met on the first POST, instead of answering 503 for ever.
    """
    server = MessageServer(address, publisher, max_size)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    LOGGER.info("accepting POST http://%s:%d/messages", *server.server_address[:2])
    try:
        while not publisher.stop.is_set():
            with server.lock:
                publisher.idle(0.2)
    finally:
        server.shutdown()
        server.server_close()
        LOGGER.info("http producer stopped")
    if server.fatal is not None:
        raise server.fatal
