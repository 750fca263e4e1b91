"""WebSocket through the bridge: connect / receive / disconnect messages key by key, the 1.x
reply rules (accept, reject → 403, data before accept, close codes, combined replies) and bad
replies, with a real ``headrace`` process and the ``websockets`` client, over IPC and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets

from headrace.layers.base import BaseChannelLayer
from tests.interface.support import WAIT, InterfaceServer, next_message, nothing_on, open_websocket
from tests.interface.test_http import assert_no_traceback, unique_path

CONNECT_KEYS = {
    "reply_channel",
    "scheme",
    "path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "order",
}


async def opened(
    server: InterfaceServer, layer: BaseChannelLayer, path: str, reply: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Connect to ``path``; the test-side worker answers ``websocket.connect`` with ``reply``."""
    opening = asyncio.create_task(open_websocket(server.ws_url + path))
    message = await next_message(layer, "websocket.connect", path)
    await layer.send(message["reply_channel"], reply)
    return await opening, message


async def closed_code(connection: Any) -> int:
    await asyncio.wait_for(connection.wait_closed(), WAIT)
    code: int = connection.close_code
    return code


async def test_connect_echo_orders_and_disconnect(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("chäť")
    quoted = path.replace("ä", "%C3%A4").replace("ť", "%C5%A5")
    opening = asyncio.create_task(
        open_websocket(
            server.ws_url + quoted + "?room=1",
            subprotocols=["chat.v2", "chat.v1"],
            additional_headers={"X-Token": "t", "X_Smuggled": "no"},
        )
    )
    connect = await next_message(layer, "websocket.connect", path)
    assert set(connect) == CONNECT_KEYS | {"subprotocols"}
    assert connect["order"] == 0
    assert connect["scheme"] == "ws"
    assert connect["path"] == path
    assert connect["query_string"] == b"room=1"
    assert connect["root_path"] == ""
    assert connect["subprotocols"] == ["chat.v2", "chat.v1"]
    assert [b"x-token", b"t"] in connect["headers"]
    assert all(name != b"x_smuggled" for name, _ in connect["headers"])
    assert connect["client"][0] == "127.0.0.1"
    assert connect["server"] == ["127.0.0.1", server.port]
    reply = connect["reply_channel"]
    assert reply.startswith("websocket.send.") and "!" in reply
    await layer.send(reply, {"accept": True, "subprotocol": "chat.v1"})
    connection = await opening
    assert connection.subprotocol == "chat.v1"

    await connection.send("hello")
    await connection.send(b"\x00\x01")
    text = await next_message(layer, "websocket.receive", path)
    assert text == {
        "reply_channel": reply,
        "path": path,
        "order": 1,
        "text": "hello",
        "bytes": None,
    }
    data = await next_message(layer, "websocket.receive", path)
    assert data == {
        "reply_channel": reply,
        "path": path,
        "order": 2,
        "text": None,
        "bytes": b"\x00\x01",
    }
    await layer.send(reply, {"text": "echo:" + text["text"]})
    await layer.send(reply, {"bytes": data["bytes"][::-1]})
    assert await asyncio.wait_for(connection.recv(), WAIT) == "echo:hello"
    assert await asyncio.wait_for(connection.recv(), WAIT) == b"\x01\x00"

    await connection.close(code=4321)
    gone = await next_message(layer, "websocket.disconnect", path)
    assert gone == {"reply_channel": reply, "code": 4321, "path": path, "order": 3}
    assert_no_traceback(server)


async def test_no_subprotocols_key_when_none_offered(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("plain")
    connection, connect = await opened(server, layer, path, {"accept": True})
    assert set(connect) == CONNECT_KEYS
    await connection.close()


@pytest.mark.parametrize("reply", [{"accept": False}, {"close": True}, {"close": 4000}])
async def test_rejection_before_accept_is_a_403(
    server: InterfaceServer, layer: BaseChannelLayer, reply: dict[str, Any]
) -> None:
    path = unique_path("reject")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await opened(server, layer, path, reply)
    assert refused.value.response.status_code == 403
    gone = await next_message(layer, "websocket.disconnect", path)
    assert gone["order"] == 1


@pytest.mark.parametrize(
    ("reply", "frames"),
    [
        ({"text": "hi"}, ["hi"]),
        ({"bytes": b"hi"}, [b"hi"]),
        ({"accept": True, "text": "welcome"}, ["welcome"]),
    ],
)
async def test_data_before_accept_accepts(
    server: InterfaceServer, layer: BaseChannelLayer, reply: dict[str, Any], frames: list[Any]
) -> None:
    connection, _ = await opened(server, layer, unique_path("implicit"), reply)
    for frame in frames:
        assert await asyncio.wait_for(connection.recv(), WAIT) == frame
    await connection.close()


@pytest.mark.parametrize(
    ("reply", "frames", "code"),
    [
        ({"close": True}, [], 1000),
        ({"close": 4001}, [], 4001),
        ({"text": "bye", "close": 4002}, ["bye"], 4002),
        ({"bytes": b"bye", "close": True}, [b"bye"], 1000),
        ({"accept": False}, [], 4403),
    ],
)
async def test_close_replies(
    server: InterfaceServer,
    layer: BaseChannelLayer,
    reply: dict[str, Any],
    frames: list[Any],
    code: int,
) -> None:
    path = unique_path("close")
    connection, connect = await opened(server, layer, path, {"accept": True})
    await layer.send(connect["reply_channel"], reply)
    for frame in frames:
        assert await asyncio.wait_for(connection.recv(), WAIT) == frame
    assert await closed_code(connection) == code
    gone = await next_message(layer, "websocket.disconnect", path)
    assert (gone["code"], gone["order"]) == (code, 1)


BAD_REPLIES: list[Any] = [
    {"txt": "typo"},
    {"text": "a", "bytes": b"b"},
    {"text": b"not str"},
    {"bytes": "not bytes"},
    {"close": "soon"},
    {"close": 1006},
    {"accept": "yes"},
]


@pytest.mark.parametrize("reply", BAD_REPLIES, ids=[str(i) for i in range(len(BAD_REPLIES))])
async def test_a_bad_reply_on_an_open_socket_closes_1011(
    server: InterfaceServer, layer: BaseChannelLayer, reply: Any
) -> None:
    path = unique_path("bad")
    connection, connect = await opened(server, layer, path, {"accept": True})
    await layer.send(connect["reply_channel"], reply)
    assert await closed_code(connection) == 1011
    assert await next_message(layer, "websocket.disconnect", path)
    still, _ = await opened(server, layer, unique_path("after-bad"), {"accept": True, "text": "ok"})
    assert await asyncio.wait_for(still.recv(), WAIT) == "ok"
    await still.close()
    assert_no_traceback(server)


@pytest.mark.parametrize("reply", [{"bogus": 1}, {"accept": True, "text": 5}])
async def test_a_bad_reply_during_the_handshake_is_a_500(
    server: InterfaceServer, layer: BaseChannelLayer, reply: Any
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await opened(server, layer, unique_path("bad-handshake"), reply)
    assert refused.value.response.status_code == 500


async def test_replies_for_a_closed_socket_are_dropped(
    server: InterfaceServer, layer: BaseChannelLayer
) -> None:
    path = unique_path("gone")
    connection, connect = await opened(server, layer, path, {"accept": True})
    await connection.close()
    assert await next_message(layer, "websocket.disconnect", path)
    for reply in ({"text": "late"}, {"close": True}, {"accept": False}):
        await layer.send(connect["reply_channel"], reply)
    still, _ = await opened(server, layer, unique_path("after-gone"), {"text": "ok"})
    assert await asyncio.wait_for(still.recv(), WAIT) == "ok"
    await still.close()
    assert await nothing_on(layer, "websocket.receive", path, within=0.2)
    assert_no_traceback(server)
