"""The five wires of the stream suite: a real headrace server and one small client per wire.

Theory of operation
-------------------
:func:`running` starts a real :class:`~headrace.server.server.Server` in the test's event loop
on two loopback listeners: a cleartext one (HTTP/1.1, h2c by prior knowledge, WebSocket over
HTTP/1.1 and over h2c with RFC 8441) and a TLS one (ALPN ``h2``) with a trustme certificate.
A test case is written once against the small client interface below and parametrised over the
wires it applies to; the wire's ``name`` is the test id (``[h1]``, ``[h2c]``, ``[h2-tls]``,
``[ws-h1]``, ``[ws-h2]``).

Every wire offers:

* :meth:`Wire.head` — one exchange on a fresh connection, returning a :class:`Reply` (the
  response of an HTTP request, or the handshake response of a WebSocket). It reports what came
  off the wire as it is, never validated away, so a case can check that a header did *not* get
  through: the HTTP/1.1 readers parse raw bytes leniently and keep them, the HTTP/2 client
  decodes HPACK without ``h2``'s inbound header validation.
* :meth:`Wire.stream` — a long response (HTTP body chunks or WebSocket messages) that the
  client does not read until told to: no ``recv`` on a raw socket, no WINDOW_UPDATE on HTTP/2,
  a one-message queue in ``websockets``.

HTTP wires add :meth:`HTTPWire.abandon` (send a request, then go away: close on HTTP/1.1,
RST_STREAM on HTTP/2); WebSocket wires add :meth:`WebSocketWire.session`, a connected
:class:`Session` (``websockets`` on HTTP/1.1, ``h2`` with extended CONNECT on HTTP/2).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import trustme
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from headrace._types import ASGIApp
from headrace.server.config import Config
from headrace.server.endpoints import Listener, TLSFiles
from headrace.server.server import Server
from tests.http2.support import H2Client
from tests.http2.test_websocket_h2 import client_frame, connect_pseudo
from tests.websocket._support import upgrade_request

WAIT = 10.0
LONG_WAIT = 40.0  # reading a whole streamed response
WIDE_WINDOW = 16 * 1024 * 1024
Headers = list[tuple[bytes, bytes]]


# ---------------------------------------------------------------------- the server


@dataclass
class Running:
    server: Server
    plain_port: int
    tls_port: int
    client_tls: ssl.SSLContext


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True)
class TLSMaterial:
    files: TLSFiles
    authority: trustme.CA

    @classmethod
    def create(cls, directory: Path) -> TLSMaterial:
        authority = trustme.CA()
        leaf = authority.issue_cert("localhost", "127.0.0.1")
        cert, key = directory / "cert.pem", directory / "key.pem"
        cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        return cls(TLSFiles(str(cert), str(key)), authority)

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.authority.configure_trust(context)
        context.set_alpn_protocols(["h2"])
        return context


@contextlib.asynccontextmanager
async def running(app: ASGIApp, tls: TLSMaterial, **options: Any) -> AsyncIterator[Running]:
    """Serve ``app`` on a cleartext and a TLS loopback listener; shut down afterwards."""
    plain, secure = _listening_socket(), _listening_socket()
    options.setdefault("lifespan", "off")
    options.setdefault("verbosity", 0)
    options.setdefault("timeout_graceful_shutdown", 2)
    server = Server(Config(**options), app)
    listeners = [Listener(plain, "plain"), Listener(secure, "tls", tls=tls.files)]
    task = asyncio.create_task(server.serve(listeners))
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield Running(server, plain.getsockname()[1], secure.getsockname()[1], tls.client_context())
    finally:
        ready.cancel()
        server.shutdown()
        await asyncio.wait_for(task, WAIT * 2)


# ---------------------------------------------------------------------- what a client saw


@dataclass
class Reply:
    """One response as it came off the wire (status 0: none arrived)."""

    status: int = 0
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    trailers: Headers = field(default_factory=list)
    informational: list[tuple[int, Headers]] = field(default_factory=list)
    reset: bool = False  # the stream was reset or the connection closed before the end
    raw: bytes = b""  # HTTP/1.1: every byte received

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)

    def carries(self, value: bytes) -> bool:
        """Whether ``value`` appears anywhere in what was received."""
        fields = [*self.headers, *self.trailers]
        fields += [item for _, block in self.informational for item in block]
        return value in self.raw or any(value in name or value in v for name, v in fields)


class Closed(Exception):
    """The server closed the WebSocket (the close frame's code and reason)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------- HTTP/1.1 bytes


def _request_bytes(method: str, path: str, headers: Headers, body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"host: localhost"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


class _H1Reader:
    """Reads HTTP/1.1 responses leniently from a stream, keeping every byte."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.raw = bytearray()

    async def _until(self, separator: bytes) -> bytes:
        data = await asyncio.wait_for(self.reader.readuntil(separator), WAIT)
        self.raw += data
        return data

    async def _exactly(self, size: int) -> bytes:
        data = await asyncio.wait_for(self.reader.readexactly(size), WAIT)
        self.raw += data
        return data

    @staticmethod
    def _fields(lines: list[bytes]) -> Headers:
        fields = []
        for line in lines:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower(), value.strip()))
        return fields

    async def head(self) -> tuple[int, Headers]:
        lines = (await self._until(b"\r\n\r\n"))[:-4].split(b"\r\n")
        return int(lines[0].split(b" ")[1]), self._fields(lines[1:])

    async def reply(self, request_method: str = "GET") -> Reply:
        reply = Reply()
        try:
            await self._read_into(reply, request_method)
        except (asyncio.IncompleteReadError, ConnectionError):
            reply.reset = True
        reply.raw = bytes(self.raw)
        return reply

    async def _read_into(self, reply: Reply, method: str) -> None:
        status, headers = await self.head()
        while 100 <= status < 200 and status != 101:
            reply.informational.append((status, headers))
            status, headers = await self.head()
        reply.status, reply.headers = status, headers
        fields = dict(headers)
        if status in (101, 204, 304) or method == "HEAD":
            return
        if b"content-length" in fields:
            reply.body = await self._exactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            reply.body, reply.trailers = await self._chunked()
        else:
            data = await asyncio.wait_for(self.reader.read(), WAIT)
            self.raw += data
            reply.body = data

    async def _chunked(self) -> tuple[bytes, Headers]:
        parts = []
        while True:
            size = int((await self._until(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                break
            parts.append((await self._exactly(size + 2))[:-2])
        trailer_lines = []
        while (line := (await self._until(b"\r\n"))[:-2]) != b"":
            trailer_lines.append(line)
        return b"".join(parts), self._fields(trailer_lines)


async def _open_plain(running: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", running.plain_port), WAIT)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await asyncio.wait_for(writer.wait_closed(), WAIT)


# ---------------------------------------------------------------------- HTTP/2 client


class LenientH2Client(H2Client):
    """The suite's ``h2`` client: inbound headers are decoded but not validated (so a header
    the server must not send is seen, not hidden behind a ProtocolError), and flow-control
    credit can be held back (:meth:`hold`) and given later (:meth:`resume`)."""

    def __init__(self) -> None:
        super().__init__(auto_ack=True)
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_inbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config)
        self.unacknowledged: list[tuple[int, int]] = []

    def hold(self) -> None:
        self.auto_ack = False

    def resume(self, stream_id: int) -> None:
        """Acknowledge what was held back and open a wide window, so the rest flows fast."""
        self.auto_ack = True
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.conn.increment_flow_control_window(WIDE_WINDOW)
            self.conn.increment_flow_control_window(WIDE_WINDOW, stream_id)
        credit, self.unacknowledged = self.unacknowledged, []
        for size, stream_id in credit:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(size, stream_id)
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived) and not self.auto_ack:
            self.unacknowledged.append((event.flow_controlled_length, event.stream_id))
        super()._handle(event)

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def reply(self, stream_id: int) -> Reply:
        response = self.responses[stream_id]
        informational = []
        for block in response.informational:
            fields = dict(block)
            status = int(fields.get(b":status", b"0"))
            informational.append((status, [(k, v) for k, v in block if not k.startswith(b":")]))
        return Reply(
            status=response.status,
            headers=list(response.headers),
            body=bytes(response.body),
            trailers=list(response.trailers),
            informational=informational,
            reset=response.reset_code is not None or not response.done.is_set(),
        )


@contextlib.asynccontextmanager
async def _h2(running: Running, tls: bool) -> AsyncIterator[LenientH2Client]:
    client = LenientH2Client()
    if tls:
        await client.connect(running.tls_port, running.client_tls)
        assert client.ssl_object.selected_alpn_protocol() == "h2"
    else:
        await client.connect(running.plain_port)
    try:
        yield client
    finally:
        await client.close()


async def _h2_wait(
    client: LenientH2Client, stream_id: int, event: str = "done", limit: float = WAIT
) -> None:
    """Wait until the stream's ``event`` is set or the connection closes (at most ``limit``)."""
    waiting: asyncio.Event = getattr(client.responses[stream_id], event)
    waiters = {asyncio.ensure_future(waiting.wait()), asyncio.ensure_future(client.closed.wait())}
    try:
        _, pending = await asyncio.wait(waiters, timeout=limit, return_when="FIRST_COMPLETED")
        if len(pending) == len(waiters):
            raise TimeoutError(f"stream {stream_id}: no {event} within {limit} s")
    finally:
        for waiter in waiters:
            waiter.cancel()


# ---------------------------------------------------------------------- streamed responses


@dataclass
class Streamed:
    """A response the client is not reading yet; :attr:`read_all` reads it to the end."""

    read_all: Callable[[], Awaitable[int]]  # returns the payload bytes received
    close: Callable[[], Awaitable[None]]


# ---------------------------------------------------------------------- the wires


class Wire(ABC):
    name = ""
    http_version = ""

    def __repr__(self) -> str:
        return self.name

    @abstractmethod
    async def head(self, running: Running, path: str, headers: Headers | None = None) -> Reply: ...

    @abstractmethod
    async def stream(self, running: Running, path: str) -> Streamed: ...


class HTTPWire(Wire):
    @abstractmethod
    async def request(
        self,
        running: Running,
        path: str,
        method: str = "GET",
        headers: Headers | None = None,
        body: bytes | None = None,
    ) -> Reply: ...

    async def head(self, running: Running, path: str, headers: Headers | None = None) -> Reply:
        return await self.request(running, path, headers=headers)

    @abstractmethod
    async def abandon(self, running: Running, path: str, entered: asyncio.Event) -> None:
        """Send a request, wait until the app has it, then go away."""
        ...


class H1(HTTPWire):
    name, http_version = "h1", "1.1"

    async def request(
        self,
        running: Running,
        path: str,
        method: str = "GET",
        headers: Headers | None = None,
        body: bytes | None = None,
    ) -> Reply:
        reader, writer = await _open_plain(running)
        try:
            writer.write(_request_bytes(method, path, headers or [], body))
            return await _H1Reader(reader).reply(method)
        finally:
            await _close_writer(writer)

    async def abandon(self, running: Running, path: str, entered: asyncio.Event) -> None:
        _, writer = await _open_plain(running)
        writer.write(_request_bytes("POST", path, [], b"payload"))
        await asyncio.wait_for(entered.wait(), WAIT)
        await _close_writer(writer)

    async def stream(self, running: Running, path: str) -> Streamed:
        reader, writer = await _open_plain(running)
        writer.write(_request_bytes("GET", path, [], None))

        async def read_all() -> int:
            return len((await _H1Reader(reader).reply()).body)

        async def close() -> None:
            await _close_writer(writer)

        return Streamed(read_all, close)


class H2(HTTPWire):
    def __init__(self, tls: bool) -> None:
        self.tls = tls
        self.name, self.http_version = ("h2-tls" if tls else "h2c"), "2"

    async def request(
        self,
        running: Running,
        path: str,
        method: str = "GET",
        headers: Headers | None = None,
        body: bytes | None = None,
    ) -> Reply:
        async with _h2(running, self.tls) as client:
            stream_id = client.start(path, method, headers, end_stream=not body)
            if body:
                with contextlib.suppress(h2.exceptions.StreamClosedError, TimeoutError):
                    await client.send_body(stream_id, body)  # a refusal may reset it midway
            await _h2_wait(client, stream_id)
            return client.reply(stream_id)

    async def abandon(self, running: Running, path: str, entered: asyncio.Event) -> None:
        async with _h2(running, self.tls) as client:
            stream_id = client.start(path, "POST", end_stream=False)
            await client.send_body(stream_id, b"payload")
            await asyncio.wait_for(entered.wait(), WAIT)
            client.reset(stream_id)
            # The connection stays open: the reset alone must reach the app.
            await client.request("/after-reset")

    async def stream(self, running: Running, path: str) -> Streamed:
        opened = _h2(running, self.tls)
        client = await opened.__aenter__()
        client.hold()
        stream_id = client.start(path)

        async def read_all() -> int:
            client.resume(stream_id)
            await _h2_wait(client, stream_id, limit=LONG_WAIT)
            return len(client.reply(stream_id).body)

        async def close() -> None:
            await opened.__aexit__(None, None, None)

        return Streamed(read_all, close)


# ---------------------------------------------------------------------- WebSocket sessions


class Session(ABC):
    """One accepted WebSocket, whatever the wire."""

    subprotocol: str | None = None

    @abstractmethod
    async def send(self, data: str | bytes) -> None: ...

    @abstractmethod
    async def receive(self) -> str | bytes:
        """The next message; raises :class:`Closed` when the server closes."""
        ...

    @abstractmethod
    async def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake and wait for the server's close frame."""
        ...

    @abstractmethod
    async def abort(self) -> None:
        """Go away without a closing handshake."""
        ...


class _WebSocketsSession(Session):
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.subprotocol = connection.subprotocol

    async def send(self, data: str | bytes) -> None:
        await self.connection.send(data)

    async def receive(self) -> str | bytes:
        try:
            return await asyncio.wait_for(self.connection.recv(), WAIT)
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else Closed(1006) from None

    async def close(self, code: int, reason: str = "") -> None:
        await asyncio.wait_for(self.connection.close(code, reason), WAIT)

    async def abort(self) -> None:
        self.connection.transport.abort()
        await asyncio.wait_for(self.connection.wait_closed(), WAIT)


class _H2Session(Session):
    def __init__(self, client: LenientH2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.offset = 0
        self.fragments: list[bytes] = []
        self.kind = 0x2
        subprotocol = client.responses[stream_id].header(b"sec-websocket-protocol")
        self.subprotocol = subprotocol.decode() if subprotocol else None

    async def send(self, data: str | bytes) -> None:
        opcode, payload = (0x1, data.encode()) if isinstance(data, str) else (0x2, data)
        await self.client.send_body(self.stream_id, client_frame(opcode, payload), False)

    def _next_frame(self) -> tuple[int, bool, bytes] | None:
        data = self.client.responses[self.stream_id].body
        view = bytes(data[self.offset : self.offset + 14])
        if len(view) < 2:
            return None
        length, start = view[1] & 0x7F, 2
        if length == 126:
            if len(view) < 4:
                return None
            length, start = struct.unpack("!H", view[2:4])[0], 4
        elif length == 127:
            if len(view) < 10:
                return None
            length, start = struct.unpack("!Q", view[2:10])[0], 10
        end = self.offset + start + length
        if len(data) < end:
            return None
        payload = bytes(data[self.offset + start : end])
        first, self.offset = view[0], end
        return first & 0x0F, bool(first & 0x80), payload

    async def receive(self) -> str | bytes:
        response = self.client.responses[self.stream_id]
        while True:
            frame = self._next_frame()
            if frame is None:
                if response.done.is_set():
                    raise Closed(1006)
                response.data_arrived.clear()
                await _h2_wait(self.client, self.stream_id, "data_arrived")
                continue
            opcode, fin, payload = frame
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                raise Closed(code, payload[2:].decode())
            if opcode in (0x1, 0x2, 0x0):
                self.fragments.append(payload)
                self.kind = opcode or self.kind  # a continuation keeps its message's kind
                if fin:
                    message, self.fragments = b"".join(self.fragments), []
                    return message.decode() if self.kind == 0x1 else message

    async def close(self, code: int, reason: str = "") -> None:
        frame = client_frame(0x8, struct.pack("!H", code) + reason.encode())
        await self.client.send_body(self.stream_id, frame, False)
        with contextlib.suppress(Closed):
            while True:
                await self.receive()

    async def abort(self) -> None:
        self.client.reset(self.stream_id)


class WebSocketWire(Wire):
    @abstractmethod
    def session(
        self, running: Running, path: str, subprotocols: list[str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Session]: ...

    async def denied(self, running: Running, path: str) -> Reply:
        """A handshake the application refuses: its HTTP answer."""
        return await self.head(running, path)


class WSH1(WebSocketWire):
    name, http_version = "ws-h1", "1.1"

    async def head(self, running: Running, path: str, headers: Headers | None = None) -> Reply:
        reader, writer = await _open_plain(running)
        try:
            extra = [(name.decode(), value.decode("latin-1")) for name, value in headers or []]
            writer.write(upgrade_request(running.plain_port, path, extra))
            return await _H1Reader(reader).reply()
        finally:
            await _close_writer(writer)

    @contextlib.asynccontextmanager
    async def _session(
        self, running: Running, path: str, subprotocols: list[str] | None, max_queue: int = 16
    ) -> AsyncIterator[Session]:
        async with websockets.connect(
            f"ws://127.0.0.1:{running.plain_port}{path}",
            subprotocols=[websockets.Subprotocol(p) for p in subprotocols or []] or None,
            compression=None,
            max_queue=max_queue,
            max_size=None,
            open_timeout=WAIT,
            close_timeout=WAIT,
        ) as connection:
            yield _WebSocketsSession(connection)

    def session(
        self, running: Running, path: str, subprotocols: list[str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Session]:
        return self._session(running, path, subprotocols)

    async def denied(self, running: Running, path: str) -> Reply:
        try:
            async with self._session(running, path, None):
                raise AssertionError("the handshake was accepted")
        except InvalidStatus as exc:
            response = exc.response
            headers = [(k.lower().encode(), v.encode()) for k, v in response.headers.raw_items()]
            return Reply(status=response.status_code, headers=headers, body=bytes(response.body))

    async def stream(self, running: Running, path: str) -> Streamed:
        opened = self._session(running, path, None, max_queue=1)
        session = await opened.__aenter__()

        async def read_all() -> int:
            total = 0
            with contextlib.suppress(Closed):
                while True:
                    total += len(await session.receive())
            return total

        async def close() -> None:
            await opened.__aexit__(None, None, None)

        return Streamed(read_all, close)


class WSH2(WebSocketWire):
    name, http_version = "ws-h2", "2"

    @staticmethod
    def _start(client: LenientH2Client, path: str, headers: Headers) -> int:
        block = [(b"sec-websocket-version", b"13"), *headers]
        return client.start(headers=block, end_stream=False, pseudo=connect_pseudo(path))

    async def head(self, running: Running, path: str, headers: Headers | None = None) -> Reply:
        async with _h2(running, tls=False) as client:
            stream_id = self._start(client, path, headers or [])
            await _h2_wait(client, stream_id, "head_arrived")
            if client.responses[stream_id].status != 200:
                await _h2_wait(client, stream_id)
            return client.reply(stream_id)

    @contextlib.asynccontextmanager
    async def _session(
        self, running: Running, path: str, subprotocols: list[str] | None, hold: bool = False
    ) -> AsyncIterator[Session]:
        async with _h2(running, tls=False) as client:
            offered = [(b"sec-websocket-protocol", ", ".join(subprotocols or []).encode())]
            stream_id = self._start(client, path, offered if subprotocols else [])
            if hold:
                client.hold()
            await _h2_wait(client, stream_id, "head_arrived")
            reply = client.reply(stream_id)
            assert reply.status == 200, reply
            yield _H2Session(client, stream_id)

    def session(
        self, running: Running, path: str, subprotocols: list[str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Session]:
        return self._session(running, path, subprotocols)

    async def stream(self, running: Running, path: str) -> Streamed:
        opened = self._session(running, path, None, hold=True)
        session = await opened.__aenter__()
        assert isinstance(session, _H2Session)

        async def read_all() -> int:
            session.client.resume(session.stream_id)
            total = 0
            with contextlib.suppress(Closed):
                while True:
                    total += len(await session.receive())
            return total

        async def close() -> None:
            await opened.__aexit__(None, None, None)

        return Streamed(read_all, close)


HTTP_WIRES: list[HTTPWire] = [H1(), H2(tls=False), H2(tls=True)]
WEBSOCKET_WIRES: list[WebSocketWire] = [WSH1(), WSH2()]
ALL_WIRES: list[Wire] = [*HTTP_WIRES, *WEBSOCKET_WIRES]


def wire_id(wire: Wire) -> str:
    return wire.name
