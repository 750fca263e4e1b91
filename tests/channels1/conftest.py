"""Fixtures of the Channels-1 API tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.asgi import channel_layers as asgi_layers
from headrace.layers import InMemoryChannelLayer
from headrace.layers import channel_layers as modern_layers
from headrace.layers.ipc import HubHost


@pytest.fixture
def view() -> Iterator[AsgiChannelLayer]:
    """A Channels-1 view over a fresh in-memory layer."""
    layer = AsgiChannelLayer(InMemoryChannelLayer(), alias="test")
    yield layer
    layer.close()


@pytest.fixture
def configured() -> Iterator[None]:
    """CHANNEL_LAYERS with a Channels-1 default layer (in-memory, ROUTING by dotted path)."""
    modern_layers.configure(
        {
            "default": {
                "BACKEND": "headrace.layers.InMemoryChannelLayer",
                "ROUTING": "tests.channels1.routing_module.channel_routing",
            },
            "listed": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "ROUTING": []},
            "modern": {"BACKEND": "headrace.layers.InMemoryChannelLayer"},
            "broken": {"BACKEND": "headrace.layers.InMemoryChannelLayer", "ROUTING": "no.such"},
        }
    )
    asgi_layers.reset()
    yield
    asgi_layers.reset()
    modern_layers.configure(None)


@pytest.fixture
def hub_path() -> Iterator[str]:
    """A private IPC hub socket path."""
    folder = tempfile.mkdtemp(prefix="hr-c1-")
    path = os.path.join(folder, "hub.sock")
    yield path
    HubHost.for_path(path).stop()
    shutil.rmtree(folder, ignore_errors=True)
