"""OriginValidator and AllowedHostsOriginValidator: Channels' pattern matrix."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

import pytest
from django.test import override_settings
from django.urls import path

from headrace.routing import URLRouter
from headrace.security.websocket import (
    AllowedHostsOriginValidator,
    OriginValidator,
    WebsocketDenier,
)
from headrace.testing import WebsocketCommunicator
from tests.django.asgi_helpers import ScopeRecorder, call, http_scope, websocket_scope

CONNECT = [{"type": "websocket.connect"}]

MATRIX = [
    # (allowed patterns, Origin header or None, admitted)
    (["*"], None, True),
    (["*"], b"http://anything.test", True),
    (["example.com"], None, False),
    (["example.com"], b"http://example.com", True),
    (["example.com"], b"https://example.com:8443", True),
    (["example.com"], b"http://sub.example.com", False),
    (["example.com"], b"http://example.com.evil.test", False),
    ([".example.com"], b"http://example.com", True),
    ([".example.com"], b"https://a.b.example.com", True),
    ([".example.com"], b"http://notexample.com", False),
    (["http://example.com"], b"http://example.com", True),
    (["http://example.com"], b"http://example.com:80", True),
    (["http://example.com"], b"https://example.com", False),
    (["http://example.com"], b"http://example.com:8000", False),
    (["https://example.com"], b"https://example.com:443", True),
    (["http://example.com:8000"], b"http://example.com:8000", True),
    (["http://example.com:8000"], b"http://example.com", False),
    (["http://.example.com"], b"http://sub.example.com", True),
    (["http://.example.com"], b"https://sub.example.com", False),
    (["HTTP://EXAMPLE.COM"], b"http://example.com", True),
    (["example.com"], b"HTTP://EXAMPLE.COM", True),
    (["localhost:8000"], b"http://localhost:9999", True),
    (["[::1]"], b"http://[::1]:8000", True),
    (["example.com"], b"null", False),
    (["example.com"], b"http://example.com:notaport", True),
    (["http://example.com"], b"http://example.com:notaport", False),
    (["http://example.com"], b"http://[broken", False),
    (["example.com", "other.test"], b"http://other.test", True),
    ([], b"http://example.com", False),
]


@pytest.mark.parametrize(("allowed", "origin", "admitted"), MATRIX)
async def test_origin_matrix(allowed: list[str], origin: bytes | None, admitted: bool) -> None:
    inner = ScopeRecorder()
    headers = [(b"origin", origin)] if origin is not None else []
    sent = await call(
        OriginValidator(inner, allowed),
        websocket_scope(headers=headers),
        [{"type": "websocket.connect"}],
    )
    if admitted:
        assert sent == [{"type": "websocket.accept"}]
        assert inner.scope["type"] == "websocket"
    else:
        assert sent == [{"type": "websocket.close"}]  # as Channels: no code (403)
        assert inner.scope == {}


async def test_last_origin_header_wins() -> None:
    headers = [(b"origin", b"http://good.test"), (b"origin", b"http://evil.test")]
    sent = await call(
        OriginValidator(ScopeRecorder(), ["good.test"]),
        websocket_scope(headers=headers),
        [{"type": "websocket.connect"}],
    )
    assert sent[0]["type"] == "websocket.close"


async def test_http_scope_is_an_error() -> None:
    with pytest.raises(ValueError, match="WebSocket"):
        await call(OriginValidator(ScopeRecorder(), ["*"]), http_scope(), [])


@pytest.mark.parametrize(
    ("origin", "admitted"),
    [
        (b"http://localhost:8000", True),
        (b"https://shop.example.com", True),
        (b"http://evil.test", False),
    ],
)
async def test_allowed_hosts_validator(origin: bytes, admitted: bool) -> None:
    app = AllowedHostsOriginValidator(ScopeRecorder())
    sent = await call(
        app, websocket_scope(headers=[(b"origin", origin)]), [{"type": "websocket.connect"}]
    )
    assert (sent[0]["type"] == "websocket.accept") is admitted


@override_settings(ALLOWED_HOSTS=[], DEBUG=True)
async def test_allowed_hosts_debug_fallback_is_loopback_only() -> None:
    app = AllowedHostsOriginValidator(ScopeRecorder())
    local = await call(
        app,
        websocket_scope(headers=[(b"origin", b"http://127.0.0.1:8000")]),
        [{"type": "websocket.connect"}],
    )
    foreign = await call(
        app,
        websocket_scope(headers=[(b"origin", b"http://example.com")]),
        [{"type": "websocket.connect"}],
    )
    assert local[0]["type"] == "websocket.accept"
    assert foreign[0]["type"] == "websocket.close"


@override_settings(ALLOWED_HOSTS=[], DEBUG=False)
async def test_allowed_hosts_empty_without_debug_refuses_all() -> None:
    app = AllowedHostsOriginValidator(ScopeRecorder())
    sent = await call(
        app,
        websocket_scope(headers=[(b"origin", b"http://127.0.0.1")]),
        [{"type": "websocket.connect"}],
    )
    assert sent[0]["type"] == "websocket.close"


class OnlyTestDomains(OriginValidator):
    """Channels' documented extension point: one pattern check per call."""

    def match_allowed_origin(self, parsed_origin: SplitResult | None, pattern: str) -> bool:
        host = parsed_origin.hostname if parsed_origin else None
        return bool(host and host.endswith(".test")) and pattern == "tests"


async def test_match_allowed_origin_is_overridable() -> None:
    app = OnlyTestDomains(ScopeRecorder(), ["tests"])
    good = await call(app, websocket_scope(headers=[(b"origin", b"http://a.test")]), CONNECT)
    bad = await call(app, websocket_scope(headers=[(b"origin", b"http://a.com")]), CONNECT)
    assert good == [{"type": "websocket.accept"}]
    assert bad == [{"type": "websocket.close"}]


@pytest.mark.parametrize(
    ("origin", "port"),
    [
        ("http://a.test", 80),
        ("wss://a.test", 443),
        ("http://a.test:8000", 8000),
        ("ftp://a.test", None),
        ("http://a.test:notaport", None),
    ],
)
def test_get_origin_port(origin: str, port: int | None) -> None:
    validator = OriginValidator(ScopeRecorder(), ["*"])
    assert validator.get_origin_port(urlsplit(origin)) == port
    assert validator.get_origin_port(None) is None


async def test_websocket_denier_as_a_routed_consumer() -> None:
    app = URLRouter([path("closed/", WebsocketDenier.as_asgi())])
    communicator = WebsocketCommunicator(app, "/closed/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected is False
