"""A lean RESP connection for the pub/sub hot path: PUBLISH and the subscriber reader.

Theory of operation
-------------------
redis-py reads a reply through several coroutine layers (``readline`` per RESP line, retry and
observability wrappers, a pool checkout per command), and its pub/sub reader is a task woken once
per message. On the pub/sub layer's send→receive path that overhead *is* the latency, so this
module takes the connection over once it is set up:

1. redis-py opens the connection (:meth:`RespConnection.open`): TCP, TLS or a Unix socket, AUTH,
   HELLO, SELECT, Sentinel master discovery — every ``hosts`` shape and connection option keeps
   working, because redis-py still does all of that.
2. The transport is then switched to this :class:`asyncio.Protocol` (``transport.set_protocol``),
   so bytes from Redis reach :meth:`data_received` directly — no reader task, no coroutine per
   line. :class:`RespParser` parses every complete reply in the chunk at once.
3. Commands are written straight to the transport and pipelined: each gets a future, resolved in
   order by the replies. On a *subscriber* connection every reply (message, subscribe and
   unsubscribe confirmations) goes to the ``on_push`` callback instead, called synchronously
   from :meth:`data_received`, which lets the layer wake a waiting ``receive()`` in the same loop
   turn the bytes arrived in.

When the connection breaks, pending futures fail with redis-py's ``ConnectionError`` (so the
layer's retry logic treats it like any other lost connection), :attr:`lost` completes, and the
original stream protocol is told too, so redis-py's ``disconnect()`` can finish closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from headrace.layers.redis.hosts import AnyRedis

__all__ = ["RespConnection", "RespParser", "encode_command"]

logger = logging.getLogger(__name__)

Reply = Any
PushHandler = Callable[[Reply], None]

_CRLF = b"\r\n"
_AGGREGATES = frozenset(b"*>~")


class _Incomplete(Exception):
    """The buffer ends inside a reply; wait for more bytes."""


def encode_command(*args: bytes | str) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespParser:
    """Incremental RESP2/RESP3 parser: feed bytes, get every complete reply.

    Errors become :class:`ResponseError` instances (returned, not raised); RESP3 maps become
    flat lists, attributes are skipped."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Reply]:
        buffer = self._buffer
        buffer += data
        replies: list[Reply] = []
        position = 0
        try:
            while position < len(buffer):
                reply, position = self._parse(buffer, position)
                replies.append(reply)
        except _Incomplete:
            pass
        del buffer[:position]
        return replies

    def _line(self, buffer: bytearray, position: int) -> tuple[bytes, int]:
        end = buffer.find(_CRLF, position)
        if end < 0:
            raise _Incomplete
        return bytes(buffer[position + 1 : end]), end + 2

    def _parse(self, buffer: bytearray, position: int) -> tuple[Reply, int]:
        if position >= len(buffer):
            raise _Incomplete
        kind = buffer[position]
        line, position = self._line(buffer, position)
        if kind == 36:  # $ bulk string
            length = int(line)
            if length < 0:
                return None, position
            end = position + length
            if len(buffer) < end + 2:
                raise _Incomplete
            return bytes(buffer[position:end]), end + 2
        if kind == 124:  # | attribute: a map to skip, then the real reply
            for _ in range(2 * int(line)):
                _, position = self._parse(buffer, position)
            return self._parse(buffer, position)
        if kind in _AGGREGATES or kind == 37:  # * > ~ arrays, pushes, sets; % maps
            count = int(line)
            if count < 0:
                return None, position
            if kind == 37:
                count *= 2
            items = []
            for _ in range(count):
                item, position = self._parse(buffer, position)
                items.append(item)
            return items, position
        return self._scalar(kind, line, buffer, position)

    def _scalar(
        self, kind: int, line: bytes, buffer: bytearray, position: int
    ) -> tuple[Reply, int]:
        if kind == 58:  # : integer
            return int(line), position
        if kind == 43:  # + simple string
            return line, position
        if kind in (45, 33):  # - error, ! bulk error
            if kind == 33:
                end = position + int(line)
                if len(buffer) < end + 2:
                    raise _Incomplete
                line, position = bytes(buffer[position:end]), end + 2
            return ResponseError(line.decode(errors="replace")), position
        if kind == 95:  # _ null
            return None, position
        if kind == 35:  # # boolean
            return line == b"t", position
        if kind == 44:  # , double
            return float(line), position
        raise RedisConnectionError(f"unexpected RESP type byte {kind!r} from Redis")


class RespConnection(asyncio.Protocol):
    """One Redis connection driven directly by this protocol (see the module docstring)."""

    def __init__(self, on_push: PushHandler | None = None) -> None:
        self._on_push = on_push
        self._parser = RespParser()
        self._pending: deque[asyncio.Future[Reply]] = deque()
        self._transport: asyncio.Transport | None = None
        self._original: asyncio.BaseProtocol | None = None
        self._redis_connection: Any = None
        self._writable: asyncio.Event = asyncio.Event()
        self._writable.set()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, client: AnyRedis, on_push: PushHandler | None = None) -> RespConnection:
        """Connect through ``client``'s pool settings (auth, TLS, Sentinel...), then take over.

        ``on_push`` makes this a subscriber connection: every reply goes to it."""
        connection = client.connection_pool.make_connection()  # type: ignore[union-attr]
        try:
            await connection.connect()
        except BaseException:
            # Cancelled (or failed) after the socket opened, e.g. during AUTH/HELLO: close it
            # now rather than leave an open socket to the garbage collector.
            with contextlib.suppress(Exception):
                await connection.disconnect()
            raise
        writer: asyncio.StreamWriter = connection._writer
        # Not an isinstance check: uvloop's transports have the same API but other classes.
        transport = cast(asyncio.Transport, writer.transport)
        protocol = cls(on_push)
        protocol._redis_connection = connection
        protocol._original = transport.get_protocol()
        protocol._transport = transport
        transport.set_protocol(protocol)
        return protocol

    @property
    def is_open(self) -> bool:
        return not self.lost.done()

    def send(self, *args: bytes | str) -> None:
        """Write a command whose replies go to ``on_push`` (subscriber connections)."""
        self._write(encode_command(*args))

    def call(self, *args: bytes | str) -> asyncio.Future[Reply]:
        """Write a command; the future gets its reply (or the error)."""
        self._write(encode_command(*args))
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        return future

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if not self._writable.is_set():
            await self._writable.wait()  # also set when the connection is lost

    def _write(self, data: bytes) -> None:
        if self._transport is None or self.lost.done():
            raise RedisConnectionError("connection to Redis lost")
        self._transport.write(data)

    # ------------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        replies = self._parser.feed(data)
        if self._on_push is not None:
            for reply in replies:
                try:
                    self._on_push(reply)
                except Exception:  # one bad message must not cost the connection
                    logger.exception("dropped a malformed pub/sub message from Redis")
            return
        for reply in replies:
            if not self._pending:
                continue  # an unsolicited reply (RESP3 push) on a command connection
            future = self._pending.popleft()
            if future.done():
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        error = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that gave up must not log it
        if not self.lost.done():
            self.lost.set_result(None)
        self._writable.set()
        if self._original is not None:
            self._original.connection_lost(exc)  # lets redis-py's disconnect() finish

    async def close(self) -> None:
        """Close the connection and wait until the socket is closed."""
        connection, self._redis_connection = self._redis_connection, None
        if connection is not None:
            await connection.disconnect()
