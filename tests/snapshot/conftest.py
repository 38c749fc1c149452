"""Fixtures for the snapshot tests: where the shared real-world corpus lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def corpus_path() -> Path:
    """``$CONNREF_CORPUS`` if set, else ``<repo>/../shared/corpus`` (CI lays shared/ beside it)."""
    configured = os.environ.get("CONNREF_CORPUS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The corpus folder; a missing corpus fails the test, because CI always has it."""
    path = corpus_path()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(
            f"flow corpus not found at {path} (no MANIFEST.tsv). Set CONNREF_CORPUS to the folder "
            "holding MANIFEST.tsv, flows/ and other/, or put shared/corpus beside the repository.",
            pytrace=False,
        )
    return path
