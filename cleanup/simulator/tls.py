"""A throwaway certificate authority and server certificate for the simulator's HTTPS listener."""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class ServerTls:
    """The CA (as a PEM file clients can verify with) and the server-side SSL context."""

    ca_bundle_path: str
    context: ssl.SSLContext
    _tmpdir: tempfile.TemporaryDirectory[str]

    def cleanup(self) -> None:
        """Remove the CA file."""
        self._tmpdir.cleanup()


def make_server_tls() -> ServerTls:
    """Generate a CA, issue a loopback certificate from it and write the CA PEM to a temp file."""
    ca = trustme.CA(organization_name="connref-cleanup simulator")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(context)
    tmpdir = tempfile.TemporaryDirectory(prefix="connref-sim-ca-")
    path = Path(tmpdir.name) / "simulator-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ServerTls(ca_bundle_path=str(path), context=context, _tmpdir=tmpdir)
