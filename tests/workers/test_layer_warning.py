"""``--workers N > 1`` with Django and no cross-process layer tells the user about the IPC layer."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.workers.helpers import supervised

APP = "tests.workers.djangosite.asgi:application"
HINT = "headrace.layers.ipc.IPCChannelLayer"


@pytest.mark.parametrize(
    ("settings", "warned"),
    [("settings", True), ("settings_ipc", False)],
    ids=["no-layer", "ipc-layer"],
)
def test_warning_names_the_ipc_layer(settings: str, warned: bool) -> None:
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": f"tests.workers.djangosite.{settings}"}
    with supervised("--workers", "2", "-p", str(port), APP, base_url="", ready=2, env=env) as s:
        output = s.output()
    assert output.count(HINT) == (1 if warned else 0)
    if warned:
        assert "the in-memory layer cannot span processes" in output


def test_warning_for_an_in_memory_layer_configured_without_django() -> None:
    port = free_port()
    arguments = ("--workers", "2", "-p", str(port), "tests.workers.inmemory_app:application")
    with supervised(*arguments, base_url="", ready=2) as server:
        output = server.output()
    assert output.count(HINT) == 1
    assert "headrace.layers.InMemoryChannelLayer is per-process" in output
