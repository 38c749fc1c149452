"""Minimal RS256 JWT signing and the matching JWKS, for the simulated identity provider."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    """Base64url (unpadded) of compact JSON."""
    return _b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


@functools.cache
def _signing_key() -> rsa.RSAPrivateKey:
    # One key per process: generating RSA keys is slow and tests start many simulators.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _kid() -> str:
    numbers = _signing_key().public_key().public_numbers()
    return hashlib.sha256(str(numbers.n).encode()).hexdigest()[:27]


def sign_jwt(claims: dict[str, Any]) -> str:
    """A compact RS256 JWT of ``claims``."""
    header = {"typ": "JWT", "alg": "RS256", "kid": _kid()}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode("ascii")
    signature = _signing_key().sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def jwks() -> dict[str, Any]:
    """The public key set for ``jwks_uri``."""
    numbers = _signing_key().public_key().public_numbers()

    def encode_int(value: int) -> str:
        return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    key = {
        "kty": "RSA",
        "use": "sig",
        "kid": _kid(),
        "n": encode_int(numbers.n),
        "e": encode_int(numbers.e),
    }
    return {"keys": [key]}


def decode_unverified(token: str) -> dict[str, Any] | None:
    """The claims of a compact JWT without verifying it; None when it is not a well-formed JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None
