"""snapshot.tables: the clientdata hash the plan and apply compare."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanup.apply.flows import sha256_text
from cleanup.snapshot.tables import HASH_PIECE_BYTES, flow_rows, sha256_hex

BOUNDARIES = [0, 1, HASH_PIECE_BYTES - 1, HASH_PIECE_BYTES, HASH_PIECE_BYTES + 1, 2048, 50_000]


@pytest.mark.parametrize("size", BOUNDARIES)
def test_hash_in_pieces_is_sha256_at_piece_boundaries(size: int) -> None:
    raw = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert sha256_hex(raw) == hashlib.sha256(raw).hexdigest()


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=10_000))
def test_hash_in_pieces_is_sha256(raw: bytes) -> None:
    assert sha256_hex(raw) == hashlib.sha256(raw).hexdigest()


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=5_000) | st.just('{"x": "\ud800"}'))
def test_the_snapshot_hashes_clientdata_as_apply_does(text: str) -> None:
    """The same hash on both sides, lone surrogates included (they must not crash a read)."""
    flow, _ = flow_rows("env", {"workflowid": "f1", "clientdata": text})
    expected = sha256_text(text) if text else None
    assert flow["clientdata_sha256"] == expected
