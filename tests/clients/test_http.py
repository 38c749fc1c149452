"""The HTTP boundary reads proxies and CA settings from the environment once, as requests would."""

from __future__ import annotations

import dataclasses
import select
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanup.clients.platform import build_clients
from cleanup.errors import CleanupError
from cleanup.simulator.demo import demo_tenant
from tests.conftest import settings_for


class _Tunnel(socketserver.StreamRequestHandler):
    """An HTTP CONNECT proxy that records where it was asked to connect, then relays bytes."""

    def handle(self) -> None:
        target = self.rfile.readline().decode().split()[1]
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        self.server.connects.append(target)  # type: ignore[attr-defined]
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 5)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Tunnel)
    server.daemon_threads = True
    server.connects = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_requests_go_through_the_environment_proxy(
    start_simulator, secret_env, tmp_path, monkeypatch, proxy
):
    sim = start_simulator(demo_tenant())
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    clients = build_clients(settings_for(sim, tmp_path))
    assert list(clients.environments())
    assert f"127.0.0.1:{sim.port}" in proxy.connects


def test_no_proxy_is_honoured(start_simulator, secret_env, tmp_path, monkeypatch, proxy):
    sim = start_simulator(demo_tenant())
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    clients = build_clients(settings_for(sim, tmp_path))
    assert list(clients.environments())
    assert proxy.connects == []


def test_a_netrc_entry_does_not_replace_the_bearer_token(
    start_simulator, secret_env, tmp_path: Path, monkeypatch
):
    sim = start_simulator(demo_tenant())
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-a-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    clients = build_clients(settings_for(sim, tmp_path))
    assert list(clients.environments())
    sent = [r for r in sim.request_log if r.service == "bap"]
    assert sent and all(r.status == 200 for r in sent)


def _without_configured_ca(sim, tmp_path):
    settings = settings_for(sim, tmp_path)
    endpoints = dataclasses.replace(settings.endpoints, ca_bundle="")
    return dataclasses.replace(settings, endpoints=endpoints)


def test_the_environment_ca_bundle_is_used_when_none_is_configured(
    start_simulator, secret_env, tmp_path, monkeypatch
):
    sim = start_simulator(demo_tenant())
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    with pytest.raises(CleanupError, match="certificate could not be verified.*ca_bundle"):
        list(build_clients(_without_configured_ca(sim, tmp_path)).environments())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.ca_bundle_path)
    assert list(build_clients(_without_configured_ca(sim, tmp_path)).environments())
