"""The Channels-1 layer view beyond the conformance suite: its loop thread, fork, close,
settings (CHANNEL_LAYERS with ROUTING) and the package-level names."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import headrace
from headrace.asgi import (
    AsgiChannelLayer,
    ChannelLayerWrapper,
    backend_name,
    channel_layers,
    check_message,
    get_channel_layer,
)
from headrace.exceptions import InvalidChannelLayerError
from headrace.layers import InMemoryChannelLayer
from headrace.layers import channel_layers as modern_layers
from headrace.layers.ipc import IPCChannelLayer
from headrace.routing import Router

WAIT = 10.0


def receive_one(layer: AsgiChannelLayer, channels: list[str]) -> tuple[str, Any]:
    for _ in range(int(WAIT / layer.blocking_timeout) + 1):
        channel, message = layer.receive(channels, block=True)
        if channel is not None:
            return channel, message
    raise AssertionError(f"nothing arrived on {channels}")


def test_sync_call_on_the_views_own_loop_is_refused(view: AsgiChannelLayer) -> None:
    async def from_inside() -> None:
        view.send("inside", {"n": 1})

    async def hop() -> None:
        await view._on_loop(from_inside())

    with pytest.raises(RuntimeError, match="own event loop"):
        asyncio.run(hop())
    view.send("outside", {"n": 1})
    assert receive_one(view, ["outside"]) == ("outside", {"n": 1})


def test_works_in_a_thread_with_no_loop_and_many_receiving_threads(
    view: AsgiChannelLayer,
) -> None:
    for index in range(60):
        view.send("work", {"n": index})
    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            channel, message = view.receive(["work"], block=False)
            if channel is None:
                return
            with lock:
                got.append(message["n"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(got) == list(range(60))


def test_close_sends_stashed_messages_back() -> None:
    backend = InMemoryChannelLayer()
    first = AsgiChannelLayer(backend)
    first.send("left", {"side": "left"})
    first.send("right", {"side": "right"})
    channel, _ = first.receive(["left", "right"])  # both were ready: one waits in the stash
    first.close()
    second = AsgiChannelLayer(backend)
    try:
        other = "right" if channel == "left" else "left"
        assert receive_one(second, [other]) == (other, {"side": other})
    finally:
        second.close()


def test_closing_stops_the_loop_thread(view: AsgiChannelLayer) -> None:
    view.send("x", {"n": 1})
    runner = view._runner
    assert runner is not None and runner.thread.is_alive()
    view.close()
    runner.thread.join(WAIT)
    assert not runner.thread.is_alive()
    assert runner.loop.is_closed()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_loop_thread(hub_path: str) -> None:
    view = AsgiChannelLayer(lambda: IPCChannelLayer(path=hub_path))
    try:
        view.send("fork.warmup", {"n": 0})
        assert receive_one(view, ["fork.warmup"]) == ("fork.warmup", {"n": 0})
        parent_thread = view._runner
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: use the inherited view, report, leave without cleanup
            code = 1
            try:
                os.close(read_end)
                assert view._runner is None
                view.send("fork.from-child", {"pid": os.getpid()})
                _, message = receive_one(view, ["fork.to-child"])
                assert message == {"hello": "child"}
                os.write(write_end, b"ok")
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        assert receive_one(view, ["fork.from-child"]) == ("fork.from-child", {"pid": pid})
        view.send("fork.to-child", {"hello": "child"})
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"ok"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert view._runner is parent_thread
    finally:
        view.close()


def test_check_message_estimate() -> None:
    assert check_message({"a": b"x" * 100}) >= 101
    assert check_message({"a": "é" * 100}) >= 200
    with pytest.raises(TypeError, match="dict keys"):
        check_message({"a": {2: "x"}})


def test_backend_names_of_single_reader_channels() -> None:
    assert backend_name("http.request.body?abc") == "http.request.body__sr__abc"
    assert backend_name("http.response.x!y") == "http.response.x!y"
    assert backend_name("plain") == "plain"


# ---------------------------------------------------------------------- settings


@pytest.mark.usefixtures("configured")
def test_channel_layers_wrapper_from_settings() -> None:
    wrapper = channel_layers["default"]
    assert isinstance(wrapper, ChannelLayerWrapper)
    assert wrapper.alias == "default"
    assert wrapper.channel_layer is get_channel_layer()
    assert wrapper.channel_layer.alias == "default"
    from tests.channels1.routing_module import channel_routing

    assert wrapper.routing is channel_routing
    assert Router(wrapper.routing).channels == {"websocket.receive"}
    assert channel_layers["listed"].routing == []
    assert channel_layers["modern"].routing == []
    assert "default" in channel_layers and "missing" not in channel_layers
    assert headrace.channel_layers is channel_layers
    assert headrace.DEFAULT_CHANNEL_LAYER == "default"


@pytest.mark.usefixtures("configured")
def test_one_backend_for_both_apis() -> None:
    view = get_channel_layer()
    assert view.backend is modern_layers["default"]

    async def modern_send() -> None:
        backend = modern_layers["default"]
        assert backend is not None
        await backend.send("shared.channel", {"from": "modern"})

    asyncio.run(modern_send())
    assert receive_one(view, ["shared.channel"]) == ("shared.channel", {"from": "modern"})


@pytest.mark.usefixtures("configured")
def test_settings_errors_are_clear() -> None:
    with pytest.raises(InvalidChannelLayerError, match="alias 'missing'"):
        get_channel_layer("missing")
    with pytest.raises(InvalidChannelLayerError, match=r"Cannot import ROUTING 'no\.such'"):
        get_channel_layer("broken")


@pytest.mark.usefixtures("configured")
def test_set_swaps_a_wrapper_in() -> None:
    replacement = ChannelLayerWrapper(
        AsgiChannelLayer(InMemoryChannelLayer(), alias="default"), "default", []
    )
    old = channel_layers.set("default", replacement)
    try:
        assert get_channel_layer() is replacement.channel_layer
    finally:
        channel_layers.set("default", old)
        replacement.channel_layer.close()


def test_import_headrace_loads_no_framework() -> None:
    code = (
        "import sys, headrace; "
        "assert 'headrace.asgi' not in sys.modules and 'headrace.layers' not in sys.modules; "
        "assert headrace.Channel.__module__ == 'headrace.channel'; "
        "assert 'headrace.asgi' not in sys.modules; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def receiving(view: AsgiChannelLayer) -> bool:
    runner = view._runner
    return runner is not None and any(not task.done() for task in asyncio.all_tasks(runner.loop))


def test_close_while_another_thread_waits_gives_a_clear_error(view: AsgiChannelLayer) -> None:
    view.blocking_timeout = 30
    started = threading.Event()
    errors: list[BaseException] = []

    def waiter() -> None:
        started.set()
        try:
            view.receive(["never.sent"], block=True)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while not receiving(view) and time.monotonic() < deadline:
        time.sleep(0.01)  # until the receive runs on the view's loop
    view.close()
    thread.join(WAIT)
    assert len(errors) == 1 and "closed" in str(errors[0])


def test_get_channel_layer_sets_django_up_like_channels_1() -> None:
    """A 1.x ``asgi.py`` calls ``get_channel_layer()`` right after naming its settings; the
    apps are loaded by then (Channels 1.x called ``django.setup()`` there), so a routing
    that imports models works."""
    import os
    import subprocess
    import sys

    script = (
        "import os\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.worker1.site.settings'\n"
        "from headrace.asgi import get_channel_layer\n"
        "from django.apps import apps\n"
        "assert not apps.ready\n"
        "layer = get_channel_layer()\n"
        "assert apps.ready, 'apps not loaded'\n"
        "print(type(layer).__name__, apps.get_app_config('headrace').name)\n"
    )
    env = {**os.environ, "WORKER1_BACKEND": "inmemory"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AsgiChannelLayer", "headrace"]
