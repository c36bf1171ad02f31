"""A TCP proxy on loopback that a test can cut: the webhook reaches Prefect through it ("Prefect unreachable")."""

from __future__ import annotations

import socket
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to a target; while `cut`, new connections are closed at once, and cutting closes the
    open ones too (a client that keeps its connection alive, as the webhook's long-lived Prefect client does, would
    otherwise get through a cut made after it connected)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._cut = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="cuttable-proxy", daemon=True)
        self._thread.start()

    @property
    def cut(self) -> bool:
        return self._cut

    @cut.setter
    def cut(self, value: bool) -> None:
        with self._lock:
            self._cut = value
            doomed = list(self._open) if value else []
        for sock in doomed:
            self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._cut:  # cut while this one was connecting
                    doomed = True
                else:
                    doomed = False
                    self._open.update((client, upstream))
            if doomed:
                self._close(client)
                self._close(upstream)
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((src, dst))
            for sock in (src, dst):
                self._close(sock)

    def stop(self) -> None:
        self._stopping.set()
        self._server.close()
