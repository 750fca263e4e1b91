"""Every ``hosts`` shape against a real server: TLS, Unix socket, password, db, RESP3; and the
lean RESP connection of the pub/sub hot path (parser, takeover, loss)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from headrace.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from headrace.layers.redis.wire import RespConnection, RespParser, encode_command
from tests.conftest import free_port
from tests.layers_redis.conftest import MASTER_NAME, unique_prefix
from tests.layers_redis.servers import RedisProcess, SentinelProcess, remove_dir, scratch_dir

TIMEOUT = 10
PASSWORD = "s3cret-pw"


class SecureServer:
    """One redis-server with a TLS port, a Unix socket and a password."""

    def __init__(self, workdir: Path) -> None:
        authority = trustme.CA()
        cert = authority.issue_cert("127.0.0.1", "localhost")
        self.ca_file = workdir / "ca.pem"
        cert_file, key_file = workdir / "cert.pem", workdir / "key.pem"
        authority.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        self.tls_port = free_port()
        self.socket = workdir / "redis.sock"
        self.server = RedisProcess(
            workdir,
            [
                *("--tls-port", str(self.tls_port), "--tls-auth-clients", "no"),
                *("--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file)),
                *("--tls-ca-cert-file", str(self.ca_file)),
                *("--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            ],
        )

    def start(self) -> SecureServer:
        self.server.start()
        with self.server.client() as raw:
            raw.config_set("requirepass", PASSWORD)  # after start: readiness polls without auth
        return self

    def hosts(self) -> dict[str, Any]:
        return {
            "rediss URL + dict options": {
                "address": f"rediss://127.0.0.1:{self.tls_port}",
                "password": PASSWORD,
                "ssl_ca_certs": str(self.ca_file),
            },
            "unix URL with db and password": f"unix://{self.socket}?db=3&password={PASSWORD}",
            "redis URL with password": f"redis://:{PASSWORD}@127.0.0.1:{self.server.port}/1",
            "(host, port) dict, RESP3": {
                "address": ("127.0.0.1", self.server.port),
                "password": PASSWORD,
                "db": 2,
                "protocol": 3,
            },
        }


@pytest.fixture(scope="module")
def secure_server() -> Iterator[SecureServer]:
    workdir = scratch_dir()
    server = SecureServer(workdir)
    try:
        yield server.start()
    finally:
        server.server.stop()
        remove_dir(workdir)


SHAPES = [
    "rediss URL + dict options",
    "unix URL with db and password",
    "redis URL with password",
    "(host, port) dict, RESP3",
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layer_class", [RedisChannelLayer, RedisPubSubChannelLayer])
async def test_host_shape_carries_messages(
    secure_server: SecureServer, shape: str, layer_class: type[RedisChannelLayer]
) -> None:
    host = secure_server.hosts()[shape]
    prefix = unique_prefix()
    sender = layer_class(hosts=[host], prefix=prefix)
    receiver = layer_class(hosts=[host], prefix=prefix)
    try:
        channel = await receiver.new_channel()
        await receiver.group_add("room", channel)
        await sender.send(channel, {"type": "direct", "shape": shape})
        await sender.group_send("room", {"type": "group"})
        await sender.send("queue", {"type": "queued"})
        assert await asyncio.wait_for(receiver.receive(channel), TIMEOUT) == {
            "type": "direct",
            "shape": shape,
        }
        assert await asyncio.wait_for(receiver.receive(channel), TIMEOUT) == {"type": "group"}
        assert await asyncio.wait_for(receiver.receive("queue"), TIMEOUT) == {"type": "queued"}
    finally:
        await sender.flush()
        await sender.close()
        await receiver.close()


def test_wrong_password_fails_loudly(secure_server: SecureServer) -> None:
    layer = RedisPubSubChannelLayer(
        hosts=[f"redis://:wrong@127.0.0.1:{secure_server.server.port}"], reconnect_timeout=0.5
    )

    async def attempt() -> None:
        try:
            await layer.send("specific.x!y", {"type": "m"})
        finally:
            await layer.close()

    with pytest.raises(redis.AuthenticationError):
        asyncio.run(attempt())


# ---------------------------------------------------------------------- RESP parser

REPLIES = (
    b"+OK\r\n"
    b"-ERR wrong\r\n"
    b":42\r\n"
    b"$5\r\nhe\r\no\r\n"
    b"$-1\r\n"
    b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$0\r\n\r\n"
    b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    b"*-1\r\n"
    b"_\r\n"
    b"#t\r\n"
    b",1.5\r\n"
    b"%1\r\n+key\r\n:7\r\n"
    b"~2\r\n:1\r\n:2\r\n"
    b"|1\r\n+ttl\r\n:3\r\n:99\r\n"
    b"!3\r\nBAD\r\n"
    b"=8\r\ntxt:some\r\n"
    b"(12345678901234567890\r\n"
)


def _normalised(replies: list[Any]) -> list[Any]:
    return [("error", str(r)) if isinstance(r, ResponseError) else r for r in replies]


EXPECTED = [
    b"OK",
    ("error", "ERR wrong"),
    42,
    b"he\r\no",
    None,
    [b"message", b"chan", b""],
    [b"subscribe", b"c", 1],
    None,
    None,
    True,
    1.5,
    [b"key", 7],
    [1, 2],
    99,
    ("error", "BAD"),
    b"some",
    12345678901234567890,
]


def test_parser_whole_and_byte_by_byte() -> None:
    assert _normalised(RespParser().feed(REPLIES)) == EXPECTED
    parser, replies = RespParser(), []
    for index in range(len(REPLIES)):
        replies += parser.feed(REPLIES[index : index + 1])
    assert _normalised(replies) == EXPECTED


def test_encode_command() -> None:
    assert (
        encode_command(b"PUBLISH", "t", b"\0x")
        == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$2\r\n\0x\r\n"
    )


async def test_connection_pipelines_and_reports_loss(restartable_server: RedisProcess) -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=restartable_server.port)
    pushed: list[Any] = []
    subscriber = await RespConnection.open(client, pushed.append)
    publisher = await RespConnection.open(client)
    try:
        subscriber.send(b"SUBSCRIBE", b"topic")
        assert await asyncio.wait_for(publisher.call(b"PING"), TIMEOUT) == b"PONG"
        while not pushed:  # the confirmation; PING's reply proves the server saw SUBSCRIBE
            await asyncio.wait_for(publisher.call(b"PING"), TIMEOUT)
        replies = await asyncio.wait_for(
            asyncio.gather(*(publisher.call(b"PUBLISH", b"topic", b"%d" % n) for n in range(50))),
            TIMEOUT,
        )
        assert replies == [1] * 50
        with pytest.raises(ResponseError):
            await asyncio.wait_for(publisher.call(b"NOSUCHCOMMAND"), TIMEOUT)
        assert await asyncio.wait_for(publisher.call(b"PING"), TIMEOUT) == b"PONG"
        await asyncio.to_thread(restartable_server.stop)
        await asyncio.wait_for(asyncio.shield(publisher.lost), TIMEOUT)
        await asyncio.wait_for(asyncio.shield(subscriber.lost), TIMEOUT)
        with pytest.raises(RedisConnectionError):
            publisher.call(b"PING")
    finally:
        await subscriber.close()
        await publisher.close()
        await client.aclose()
    assert pushed[0] == [b"subscribe", b"topic", 1]
    assert [reply[2] for reply in pushed[1:]] == [b"%d" % n for n in range(50)]


@pytest.mark.parametrize("layer_class", [RedisChannelLayer, RedisPubSubChannelLayer])
async def test_sentinel_with_sentinel_kwargs(
    sentinel_setup: tuple[RedisProcess, SentinelProcess], layer_class: type[RedisChannelLayer]
) -> None:
    _, sentinel = sentinel_setup
    host = {
        "master_name": MASTER_NAME,
        "sentinels": [("127.0.0.1", sentinel.port)],
        "sentinel_kwargs": {"socket_connect_timeout": 5, "socket_timeout": 5},
        "socket_connect_timeout": 5,
        "db": 4,
    }
    layer = layer_class(hosts=[host], prefix=unique_prefix())
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "via.sentinel"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "via.sentinel"}
    finally:
        await layer.flush()
        await layer.close()


@pytest.mark.parametrize("layer_class", [RedisChannelLayer, RedisPubSubChannelLayer])
def test_layers_run_on_uvloop(
    system_redis: tuple[str, int], layer_class: type[RedisChannelLayer]
) -> None:
    """The server runs on uvloop when installed: its transports are not asyncio's classes."""
    prefix = unique_prefix()

    async def roundtrip() -> list[dict[str, Any]]:
        receiver = layer_class(hosts=[system_redis], prefix=prefix)
        sender = layer_class(hosts=[system_redis], prefix=prefix)
        try:
            channel = await receiver.new_channel()
            await receiver.group_add("room", channel)
            await sender.send(channel, {"type": "direct"})
            await sender.group_send("room", {"type": "group"})
            return [await asyncio.wait_for(receiver.receive(channel), TIMEOUT) for _ in "12"]
        finally:
            await sender.flush()
            await sender.close()
            await receiver.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(roundtrip()) == [{"type": "direct"}, {"type": "group"}]


async def test_connection_set_up_applies_client_settings(secure_server: SecureServer) -> None:
    """The lean connection runs redis-py's set-up itself: AUTH, HELLO 3, CLIENT SETNAME, SELECT."""
    name = f"headrace-wire-{unique_prefix()}"
    client = redis.asyncio.Redis(
        host="127.0.0.1",
        port=secure_server.server.port,
        password=PASSWORD,
        db=5,
        protocol=3,
        client_name=name,
    )
    connection = await RespConnection.open(client)
    try:
        own = await asyncio.wait_for(connection.call(b"CLIENT", b"INFO"), TIMEOUT)
        fields = dict(pair.split(b"=", 1) for pair in own.split() if b"=" in pair)
        assert fields[b"name"] == name.encode()
        assert fields[b"db"] == b"5"
        assert fields[b"resp"] == b"3"
    finally:
        await connection.close()
        await client.aclose()


async def test_connection_set_up_refusals_are_clear(secure_server: SecureServer) -> None:
    port = secure_server.server.port
    unauthenticated = redis.asyncio.Redis(host="127.0.0.1", port=port, db=1)
    wrong_db = redis.asyncio.Redis(host="127.0.0.1", port=port, password=PASSWORD, db=100000)
    try:
        with pytest.raises(redis.AuthenticationError):
            await RespConnection.open(unauthenticated)
        with pytest.raises(RedisConnectionError, match="SELECT"):
            await RespConnection.open(wrong_db)
    finally:
        await unauthenticated.aclose()
        await wrong_db.aclose()


async def test_connection_closes_on_data_that_is_not_resp() -> None:
    """A peer that is not Redis (or a corrupted stream) costs the connection, never the loop."""

    async def not_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(not_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, protocol=3)
    try:
        with pytest.raises(RedisConnectionError, match="lost"):
            await asyncio.wait_for(RespConnection.open(client), TIMEOUT)  # during HELLO 3
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
