"""A TCP proxy the tests can cut: the network path between the programs and the broker."""

from __future__ import annotations

import socket
import threading

from devtools.localbroker import free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; cut() drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._upstream = threading.Event()  # cleared by hold(): what programs send stays in the proxy
        self._upstream.set()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink, gate in ((client, upstream, self._upstream), (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(source, sink, gate), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, gate: threading.Event | None) -> None:
        try:
            while data := source.recv(65536):
                if gate is not None:
                    gate.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def hold(self) -> None:
        """Stop passing what the programs send (acks, publishes) while the broker's traffic still reaches
        them; a cut() then drops what was held, as a crash of the program's host would."""
        self._upstream.clear()

    def release(self) -> None:
        """Pass what the programs send again, the held data first (the end of a hold())."""
        self._upstream.set()

    def cut(self) -> None:
        """Drop every open connection (both directions) and refuse new ones until restore()."""
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._upstream.set()  # the held data goes nowhere: its sockets are closed

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._listener.close()
