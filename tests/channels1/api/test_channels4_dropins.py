"""The last Channels-4 drop-in details: each behaves as Channels 4.3 does (the expected values
were taken from Channels 4.3 running the same calls)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from django.test import override_settings

from headrace._types import Receive, Scope, Send
from headrace.auth import login, logout
from headrace.sessions import CookieMiddleware, SessionMiddlewareStack
from headrace.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator


async def accepts_with_headers(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept", "headers": [(b"x-a", b"1"), [b"x-b", b"2"]]})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def test_response_headers_are_left_as_the_application_sent_them() -> None:
    communicator = WebsocketCommunicator(accepts_with_headers, "/")
    assert await communicator.connect() == (True, None)
    assert communicator.response_headers == [(b"x-a", b"1"), [b"x-b", b"2"]]
    await communicator.disconnect()


def test_set_cookie_header_casing_and_message_shape() -> None:
    headers = [(b"content-type", b"text/plain")]
    message: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": headers}
    CookieMiddleware.set_cookie(message, "k", "v")
    CookieMiddleware.set_cookie(
        message,
        "s",
        "x y",
        path=None,
        secure=True,
        httponly=True,
        samesite="None",
        domain="example.com",
    )
    CookieMiddleware.set_cookie(message, "n", "1", samesite=None)
    assert message == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"text/plain"),
            (b"Set-Cookie", b"k=v; Path=/; SameSite=lax"),
            (b"Set-Cookie", b's="x y"; Domain=example.com; HttpOnly; SameSite=None; Secure'),
            (b"Set-Cookie", b"n=1; Path=/"),
        ],
    }
    assert message["headers"] is headers
    deleted: dict[str, Any] = {"type": "http.response.start"}
    CookieMiddleware.delete_cookie(deleted, "gone")
    assert deleted["headers"] == [
        (
            b"Set-Cookie",
            b'gone=""; expires=Thu, 01-Jan-1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=lax',
        )
    ]


@pytest.mark.parametrize("samesite", ["", "bogus"])
def test_an_invalid_samesite_string_is_an_assertion_error(samesite: str) -> None:
    with pytest.raises(AssertionError, match="samesite must be either 'strict', 'lax' or 'none'"):
        CookieMiddleware.set_cookie({}, "k", samesite=samesite)


def test_samesite_in_any_case_and_a_non_string() -> None:
    message: dict[str, Any] = {}
    CookieMiddleware.set_cookie(message, "k", samesite="LAX")
    assert message["headers"] == [(b"Set-Cookie", b'k=""; Path=/; SameSite=LAX')]
    with pytest.raises(AttributeError, match="samesite"):
        CookieMiddleware.set_cookie({}, "k", samesite=False)  # type: ignore[arg-type]


async def sets_session(scope: Scope, receive: Receive, send: Send) -> None:
    scope["session"]["a"] = 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"y")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def session_response(samesite: Any) -> Any:
    with override_settings(
        SESSION_COOKIE_SAMESITE=samesite, SESSION_ENGINE="django.contrib.sessions.backends.cache"
    ):
        communicator = HttpCommunicator(SessionMiddlewareStack(sets_session), "GET", "/")
        return await communicator.get_response()


def normalised(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (name, re.sub(rb"[a-z0-9]{32}", b"KEY", re.sub(rb"expires=[^;]+", b"expires=X", value)))
        for name, value in headers
    ]


async def test_session_cookie_with_each_samesite_setting() -> None:
    strict = await session_response("Strict")
    assert normalised(strict["headers"]) == [
        (b"x", b"y"),
        (
            b"Set-Cookie",
            b"sessionid=KEY; expires=X; HttpOnly; Max-Age=1209600; Path=/; SameSite=Strict",
        ),
    ]
    unset = await session_response(None)
    assert normalised(unset["headers"])[1] == (
        b"Set-Cookie",
        b"sessionid=KEY; expires=X; HttpOnly; Max-Age=1209600; Path=/",
    )
    with pytest.raises(AssertionError, match="samesite"):
        await session_response("bogus")
    with pytest.raises(AttributeError, match="samesite"):
        await session_response(False)


async def test_login_and_logout_error_messages() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Cannot find session in scope. You should wrap your consumer in SessionMiddleware."
        ),
    ):
        await login({}, object())
    with pytest.raises(
        ValueError,
        match=re.escape("User must be passed as an argument or must be present in the scope."),
    ):
        await login({"session": {}}, None)
    with pytest.raises(ValueError, match=re.escape("Login cannot find session in scope.")):
        await logout({})


async def test_several_backends_message() -> None:
    class Someone:
        pk = 1

        class _meta:  # Django's attribute name
            class pk:
                @staticmethod
                def value_to_string(user: Any) -> str:
                    return "1"

    backends = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.RemoteUserBackend",
    ]
    with override_settings(AUTHENTICATION_BACKENDS=backends):
        from django.contrib.sessions.backends.cache import SessionStore

        with pytest.raises(ValueError, match="multiple authentication backends configured"):
            await login({"session": SessionStore()}, Someone())


async def sleeps(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(30)


async def test_a_receive_output_timeout_cancels_the_application() -> None:
    communicator = ApplicationCommunicator(sleeps, {"type": "http"})
    with pytest.raises(TimeoutError):
        await communicator.receive_output(0.05)
    assert communicator.future.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await communicator.receive_output(0.05)
    with pytest.raises(asyncio.CancelledError):
        await communicator.send_input({"type": "http.request"})
