"""HTTP/1.1 over TLS for the simulator: a threading server with keep-alive and request logging."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cleanup.simulator.messages import Request, RequestRecord, Response, error_response

if TYPE_CHECKING:
    from cleanup.simulator.server import Simulator

_QUIET_ERRORS = (ssl.SSLError, ConnectionError, TimeoutError, OSError)


class SimulatorHttpServer(ThreadingHTTPServer):
    """Accepts TCP, hands each connection to a thread that does the TLS handshake itself."""

    daemon_threads = True
    allow_reuse_address = True
    ssl_context: ssl.SSLContext

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection and wrap it in TLS without handshaking yet."""
        sock, address = self.socket.accept()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus delayed ACKs
        # would add ~40 ms to every keep-alive request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Handshake in the connection's own thread, so a slow or failing client cannot
        # stall the accept loop.
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about failed connections."""
        # Clients that reject the certificate or hang up are normal here, not errors.

    def track(self, sock: socket.socket, alive: bool) -> None:
        """Remember open connections so ``close_connections`` can end keep-alive threads."""
        with self._connections_lock:
            if alive:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def close_connections(self) -> None:
        """Shut every open connection down (their threads then exit)."""
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    server: SimulatorHttpServer

    def setup(self) -> None:
        """Complete the TLS handshake, then set up the streams."""
        self.request.settimeout(10)
        self.request.do_handshake()
        self.server.track(self.request, True)
        super().setup()

    def finish(self) -> None:
        """Forget the connection and close the streams."""
        self.server.track(self.request, False)
        with contextlib.suppress(_QUIET_ERRORS):
            super().finish()

    def handle(self) -> None:
        """Serve requests until the client closes the connection."""
        try:
            super().handle()
        except _QUIET_ERRORS:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr log (the simulator keeps its own)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        """Serve any method (the other do_* names alias this one)."""
        self._serve()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        started, arrival = time.monotonic(), time.time()
        sim = self.server.simulator
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=unquote(split.path),
            raw_path=split.path,
            query=split.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            base_url=sim.base_url,
        )
        try:
            call = sim.route(req)
            response = sim.dispatch(req, call)
        except Exception as err:  # a simulator bug must be visible, not a dropped connection
            sim.internal_errors.append(traceback.format_exc())
            call = sim.route_fallback(req)
            response = error_response(500, "SimulatorInternalError", repr(err))
        body_size = 0 if response.drop_connection or self.command == "HEAD" else len(response.body)
        # Log before answering: a client that reads the log right after its response sees it.
        sim.record(
            RequestRecord(
                method=req.method,
                path=req.path,
                query=req.query,
                status=response.status,
                service=call.service,
                environment_id=call.environment_id,
                table=call.table,
                bytes_sent=body_size,
                duration_ms=(time.monotonic() - started) * 1000.0,
                time=arrival,
            )
        )
        if response.drop_connection:
            self.close_connection = True
            self.request.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        body = b"" if self.command == "HEAD" else response.body
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()
