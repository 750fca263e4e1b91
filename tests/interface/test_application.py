"""InterfaceApplication itself: what it accepts, and that it passes lifespan."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.asgi import AsgiChannelLayer
from headrace.interface import DEFAULT_BODY_CHUNK_SIZE, InterfaceApplication
from headrace.layers import InMemoryChannelLayer
from tests.interface.support import Site


def test_takes_an_async_layer_or_an_asgi1_view() -> None:
    layer = InMemoryChannelLayer()
    assert InterfaceApplication(layer).backend is layer
    view = AsgiChannelLayer(layer, max_message_size=200_000)
    application = InterfaceApplication(view)
    assert application.backend is layer
    assert application.body_chunk_size == 100_000  # half the view's message limit
    assert InterfaceApplication(layer).body_chunk_size == DEFAULT_BODY_CHUNK_SIZE
    assert view.as_asgi_application().backend is layer
    view.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"layer": object()}, TypeError),
        ({"http_timeout": 0}, ValueError),
        ({"http_timeout": -1}, ValueError),
        ({"body_chunk_size": 0}, ValueError),
    ],
)
def test_bad_arguments_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    layer = options.pop("layer", InMemoryChannelLayer())
    with pytest.raises(error):
        InterfaceApplication(layer, **options)


def test_lifespan_on_starts_and_stops_cleanly() -> None:
    site = Site("ipc")
    try:
        server = site.server("--lifespan", "on")
        assert server.stop() == 0
        assert "Traceback" not in server.output
    finally:
        site.close()
