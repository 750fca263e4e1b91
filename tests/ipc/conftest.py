"""Shared fixtures of the IPC layer tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from headrace.layers.ipc import HubHost


@pytest.fixture
def hub_path() -> Iterator[str]:
    """A private hub socket path (short: Unix socket paths are limited to 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="hr-ipc-")
    path = os.path.join(folder, "hub.sock")
    yield path
    HubHost.for_path(path).stop()
    shutil.rmtree(folder, ignore_errors=True)
