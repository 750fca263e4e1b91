"""Routers: protocol type, URL (Django path/re_path, nesting, root_path), channel name."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.urls import path, re_path

from headrace._types import Receive, Scope, Send
from headrace.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter
from headrace.testing import ApplicationCommunicator


class ScopeEcho:
    """Sends back the scope keys routing touched."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "echo",
                "app": self.name,
                "url_route": scope.get("url_route"),
                "path_remaining": scope.get("path_remaining"),
            }
        )


async def run(app: Any, scope: Scope) -> dict[str, Any]:
    communicator = ApplicationCommunicator(app, scope)
    result = await communicator.receive_output()
    await communicator.wait()
    return dict(result)


async def test_protocol_type_router() -> None:
    router = ProtocolTypeRouter({"http": ScopeEcho("h"), "websocket": ScopeEcho("w")})
    assert (await run(router, {"type": "websocket", "path": "/"}))["app"] == "w"
    with pytest.raises(ValueError, match="No application configured for scope type 'lifespan'"):
        await run(router, {"type": "lifespan"})


async def test_url_router_path_converters_and_defaults() -> None:
    router = URLRouter(
        [
            path("rooms/<int:room>/", ScopeEcho("room"), {"mode": "chat"}),
            re_path(r"^users/(?P<name>\w+)/$", ScopeEcho("user")),
            re_path(r"^positional/(\d+)/$", ScopeEcho("positional")),
        ]
    )
    room = await run(router, {"type": "websocket", "path": "/rooms/42/"})
    assert room["app"] == "room"
    assert room["url_route"] == {"args": (), "kwargs": {"room": 42, "mode": "chat"}}
    user = await run(router, {"type": "websocket", "path": "/users/ada/"})
    assert user["url_route"]["kwargs"] == {"name": "ada"}
    positional = await run(router, {"type": "websocket", "path": "/positional/7/"})
    assert positional["url_route"]["args"] == ("7",)


async def test_nested_routers_accumulate_kwargs() -> None:
    inner = URLRouter([path("chat/<str:room>/", ScopeEcho("inner"))])
    outer = URLRouter(
        [
            path("v<int:version>/", inner),
            path("other/", ScopeEcho("other")),
        ]
    )
    result = await run(outer, {"type": "websocket", "path": "/v2/chat/lobby/"})
    assert result["app"] == "inner"
    assert result["url_route"]["kwargs"] == {"version": 2, "room": "lobby"}


async def test_nested_miss_falls_through_to_next_entry() -> None:
    outer = URLRouter(
        [
            re_path(r"^api/", URLRouter([path("a/", ScopeEcho("a"))])),
            re_path(r"^api/b/$", ScopeEcho("fallback")),
        ]
    )
    assert (await run(outer, {"type": "http", "path": "/api/b/"}))["app"] == "fallback"


async def test_no_route_names_the_full_path() -> None:
    outer = URLRouter([path("v1/", URLRouter([path("x/", ScopeEcho("x"))]))])
    with pytest.raises(ValueError, match=r"No route found for path '/v1/nope/'"):
        await run(outer, {"type": "http", "path": "/v1/nope/"})


async def test_root_path_is_stripped() -> None:
    router = URLRouter([path("ws/", ScopeEcho("ws"))])
    scope = {"type": "websocket", "path": "/prefix/ws/", "root_path": "/prefix"}
    assert (await run(router, scope))["app"] == "ws"
    with pytest.raises(ValueError, match="outside root_path"):
        await run(router, {"type": "websocket", "path": "/ws/", "root_path": "/prefix"})


async def test_missing_path_key() -> None:
    with pytest.raises(ValueError, match="No 'path' key"):
        await run(URLRouter([]), {"type": "http"})


async def test_channel_name_router() -> None:
    router = ChannelNameRouter({"thumbnails": ScopeEcho("thumbs")})
    assert (await run(router, {"type": "channel", "channel": "thumbnails"}))["app"] == "thumbs"
    with pytest.raises(ValueError, match="channel name 'other'"):
        await run(router, {"type": "channel", "channel": "other"})
    with pytest.raises(ValueError, match="without a 'channel' key"):
        await run(router, {"type": "channel"})


def test_get_default_application_errors_are_clear() -> None:
    code = (
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure()\n"
        "django.setup()\n"
        "from headrace.routing import get_default_application\n"
        "for value in (None, 'nodots', 'no_such_module.app', 'headrace.routing.nope',\n"
        "              'headrace.routing.ProtocolTypeRouter'):\n"
        "    settings.ASGI_APPLICATION = value\n"
        "    try:\n"
        "        print(get_default_application())\n"
        "    except Exception as error:\n"
        "        print(type(error).__name__, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    outputs = result.stdout.splitlines()
    assert outputs[0].startswith("ImproperlyConfigured Cannot find ASGI_APPLICATION setting")
    assert outputs[1].startswith("ImproperlyConfigured Cannot find ASGI_APPLICATION setting")
    assert outputs[2].startswith("ImproperlyConfigured Cannot import ASGI_APPLICATION module")
    assert outputs[3] == (
        "ImproperlyConfigured Cannot find 'nope' in ASGI_APPLICATION module headrace.routing"
    )
    assert outputs[4] == "<class 'headrace.routing.ProtocolTypeRouter'>"
