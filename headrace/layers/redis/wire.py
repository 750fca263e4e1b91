"""A lean RESP connection for the hot paths: PUBLISH, the subscriber reader, blocking pops, sends.

Theory of operation
-------------------
redis-py reads a reply through several coroutine layers (``readline`` per RESP line, retry and
observability wrappers, a pool checkout per command), and its pub/sub reader is a task woken once
per message. On the pub/sub layer's send→receive path that overhead *is* the latency, so this
module owns these connections end to end:

1. *Where and how* come from the layer's redis-py client, through public API only: its pool's
   ``make_connection()`` builds an unconnected connection object whose attributes carry every
   ``hosts`` option (host and port or Unix path, TLS context, credentials or credential
   provider, RESP version, db, client name, timeouts, keepalive); a Sentinel-managed pool
   names the current master (``get_master_address()``). That object never opens a socket.
2. :meth:`RespConnection.open` opens the socket itself (``loop.create_connection`` or
   ``create_unix_connection``) with this :class:`asyncio.Protocol`, so bytes from Redis reach
   :meth:`data_received` directly — no reader task, no coroutine per line.
   :class:`RespParser` parses every complete reply in the chunk at once.
3. The set-up commands redis-py would send run on that connection before it is handed out:
   ``HELLO 3`` (with ``AUTH`` when credentials are set) or ``AUTH``, then ``CLIENT SETNAME`` and
   ``SELECT``. A refused AUTH raises redis-py's ``AuthenticationError``, any other refusal its
   ``ConnectionError``, so the layer's retry logic treats them as before.
4. Commands are written straight to the transport and pipelined: each gets a future, resolved in
   order by the replies. With :attr:`RespConnection.coalesce` set, the commands of one loop
   turn are joined into one write at its end (the layer's script connection: many senders, one
   syscall). On a *subscriber* connection every reply after set-up (message,
   subscribe and unsubscribe confirmations) goes to the ``on_push`` callback instead, called
   synchronously from :meth:`data_received`, which lets the layer wake a waiting ``receive()``
   in the same loop turn the bytes arrived in.

When the connection breaks, pending futures fail with redis-py's ``ConnectionError``, and
:attr:`lost` completes. A set-up that fails or is cancelled closes its socket at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.credentials import UsernamePasswordCredentialProvider
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        if kind in (36, 61):  # $ bulk string, = verbatim string ("txt:" + text)
            length = int(line)
            if length < 0:
                return None, position
            end = position + length
            if len(buffer) < end + 2:
                raise _Incomplete
            start = position + 4 if kind == 61 else position
            return bytes(buffer[start:end]), end + 2
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
        if kind in (58, 40):  # : integer, ( big number
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


_AUTH_REFUSALS = (b"WRONGPASS", b"NOAUTH", b"ERR invalid password", b"ERR AUTH")
CLOSE_TIMEOUT = 2.0


def _settings_of(client: AnyRedis) -> tuple[aioredis.ConnectionPool, AbstractConnection]:
    """The pool and an unconnected connection object holding every connection option."""
    if not isinstance(client, aioredis.Redis):
        raise TypeError(f"pub/sub connections need a plain or Sentinel client, not {client!r}")
    pool = client.connection_pool
    # redis-py leaves make_connection() unannotated; it returns the pool's connection_class.
    settings: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
    return pool, settings


async def _credentials(settings: AbstractConnection) -> tuple[str, ...]:
    provider = settings.credential_provider
    if provider is None and (settings.username or settings.password):
        provider = UsernamePasswordCredentialProvider(settings.username, settings.password)
    if provider is None:
        return ()
    return tuple(await provider.get_credentials_async())


def _refusal(command: str, error: ResponseError) -> RedisConnectionError:
    """The exception redis-py would raise for a refused set-up command."""
    text = str(error)
    if command in ("AUTH", "HELLO") and text.encode().startswith(_AUTH_REFUSALS):
        return AuthenticationError(f"Redis refused {command}: {text}")
    return RedisConnectionError(f"Redis refused {command} while connecting: {text}")


class RespConnection(asyncio.Protocol):
    """One Redis connection driven directly by this protocol (see the module docstring)."""

    def __init__(self, on_push: PushHandler | None = None) -> None:
        self._wanted_push = on_push
        self._on_push: PushHandler | None = None  # set once the set-up replies are read
        self._parser = RespParser()
        self._pending: deque[asyncio.Future[Reply]] = deque()
        self._transport: asyncio.Transport | None = None
        self._writable: asyncio.Event = asyncio.Event()
        self._writable.set()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing: list[bytes] | None = None  # coalesced writes waiting for the flush
        # When set, the commands written in one loop turn go out in ONE write at its end.
        self.coalesce = False

    @classmethod
    async def open(cls, client: AnyRedis, on_push: PushHandler | None = None) -> RespConnection:
        """Connect with ``client``'s settings (auth, TLS, Unix socket, Sentinel...).

        ``on_push`` makes this a subscriber connection: every reply after set-up goes to it."""
        pool, settings = _settings_of(client)
        protocol = await cls._connect(pool, settings, on_push)
        try:
            async with asyncio.timeout(settings.socket_timeout):
                await protocol._set_up(settings)
        except BaseException as exc:
            # Failed or cancelled during AUTH/HELLO/SELECT: close the socket now rather than
            # leave it open for the garbage collector.
            protocol._abort()
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError("Redis did not answer the connection set-up") from None
            raise
        protocol._on_push = protocol._wanted_push
        return protocol

    @classmethod
    async def _connect(
        cls,
        pool: aioredis.ConnectionPool,
        settings: AbstractConnection,
        on_push: PushHandler | None,
    ) -> RespConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.socket_connect_timeout):
                if isinstance(settings, UnixDomainSocketConnection):
                    _, protocol = await loop.create_unix_connection(
                        lambda: cls(on_push), settings.path
                    )
                    return protocol
                host, port = await cls._address(pool, settings)
                ssl = settings.ssl_context.get() if isinstance(settings, SSLConnection) else None
                transport, protocol = await loop.create_connection(
                    lambda: cls(on_push), host, port, ssl=ssl
                )
        except TimeoutError:
            raise RedisTimeoutError("timed out connecting to Redis") from None
        protocol._tune_socket(transport, settings)
        return protocol

    @staticmethod
    async def _address(
        pool: aioredis.ConnectionPool, settings: AbstractConnection
    ) -> tuple[str, int]:
        if isinstance(pool, SentinelConnectionPool):
            # Unannotated in redis-py; it returns the master's (host, port).
            host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
            return str(host), int(port)
        assert isinstance(settings, aioredis.Connection)
        return settings.host, settings.port

    def _tune_socket(self, transport: asyncio.BaseTransport, settings: AbstractConnection) -> None:
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if isinstance(settings, aioredis.Connection) and settings.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                options = settings.socket_keepalive_options
                for option, value in options.items() if isinstance(options, Mapping) else ():
                    sock.setsockopt(socket.SOL_TCP, option, value)
        except (OSError, TypeError):
            self._abort()  # an invalid keepalive option: do not leave the socket open
            raise

    async def _set_up(self, settings: AbstractConnection) -> None:
        """What redis-py's ``on_connect`` sends: HELLO/AUTH, CLIENT SETNAME, SELECT."""
        credentials = await _credentials(settings)
        if int(settings.protocol or 2) >= 3:
            user_and_password = credentials if len(credentials) != 1 else ("default", *credentials)
            auth = ("AUTH", *user_and_password) if credentials else ()
            await self._set_up_command("HELLO", "3", *auth)
        elif credentials:
            await self._authenticate(credentials)
        if settings.client_name:
            await self._set_up_command("CLIENT", "SETNAME", settings.client_name)
        if settings.db and int(settings.db):
            await self._set_up_command("SELECT", str(settings.db))

    async def _authenticate(self, credentials: tuple[str, ...]) -> None:
        try:
            await self.call(b"AUTH", *credentials)
        except ResponseError as error:
            if len(credentials) == 2 and "wrong number of arguments" in str(error):
                # A Redis before 6 takes only a password.
                await self._set_up_command("AUTH", credentials[1])
                return
            raise _refusal("AUTH", error) from None

    async def _set_up_command(self, command: str, *args: str) -> None:
        try:
            await self.call(command, *args)
        except ResponseError as error:
            raise _refusal(command, error) from None

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
        if not self.coalesce:
            self._transport.write(data)
        elif self._outgoing is not None:
            self._outgoing.append(data)
        else:
            self._outgoing = [data]
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, None
        if outgoing and self._transport is not None and not self.lost.done():
            self._transport.write(b"".join(outgoing))

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports have the same API but other classes.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except (RedisConnectionError, ValueError) as exc:
            # Not RESP: nothing after this point can be trusted, so the connection goes (its
            # pending calls fail with ConnectionError and the layer reconnects).
            logger.error("closing a Redis connection that sent unparseable data: %s", exc)
            self._abort()
            return
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

    async def close(self) -> None:
        """Close the connection and wait until the socket is closed."""
        transport = self._transport
        if transport is None:
            return
        self._flush()
        transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self.lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self._abort()  # the peer does not take the last bytes: drop them
            await asyncio.shield(self.lost)

    def abort(self) -> None:
        """Drop the connection at once (pending calls fail with ConnectionError)."""
        self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
