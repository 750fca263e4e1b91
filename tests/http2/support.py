"""Test support: run a real headrace server in the test's loop; an ``h2``-based asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.connection import ConnectionState

from headrace._types import ASGIApp
from headrace.server.config import Config
from headrace.server.endpoints import Listener, TLSFiles
from headrace.server.server import Server

TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def serve(
    app: ASGIApp, tls: TLSFiles | None = None, **options: Any
) -> AsyncIterator[tuple[int, Server]]:
    """Serve ``app`` on a free loopback port; yields (port, server); shuts down after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    options.setdefault("lifespan", "off")
    options.setdefault("verbosity", 0)
    server = Server(Config(**options), app)
    task = asyncio.create_task(server.serve([Listener(sock, "test", tls=tls)]))
    try:
        await asyncio.wait_for(server.ready.wait(), TIMEOUT)
        yield port, server
    finally:
        server.shutdown()
        await asyncio.wait_for(task, TIMEOUT)


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reset_code: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    head_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    data_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: bytes) -> bytes | None:
        return dict(self.headers).get(name)


class H2Client:
    """A small HTTP/2 client over asyncio streams, driven by the ``h2`` library."""

    def __init__(self, auto_ack: bool = True) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config)
        self.auto_ack = auto_ack
        self.responses: dict[int, Response] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = asyncio.Event()
        self.goaway_received = asyncio.Event()
        self.settings_received = asyncio.Event()
        self.window_opened = asyncio.Event()
        self.ping_acks = 0
        self.ping_acked = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(
        self,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        settings: dict[int, int] | None = None,
    ) -> H2Client:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=ssl_context,
                server_hostname="localhost" if ssl_context else None,
            ),
            TIMEOUT,
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self._task = asyncio.create_task(self._read_loop())
        await asyncio.wait_for(self.settings_received.wait(), TIMEOUT)
        return self

    @property
    def ssl_object(self) -> Any:
        assert self._writer is not None
        return self._writer.get_extra_info("ssl_object")

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self.flush()
        self._writer.write(data)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for event in self._receive(data):
                    self._handle(event)
                self.flush()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.done.set()
                response.head_arrived.set()
                response.data_arrived.set()

    def _receive(self, data: bytes) -> list[h2.events.Event]:
        if self.conn.state_machine.state == ConnectionState.CLOSED and self.goaway is not None:
            # After a graceful GOAWAY the server still finishes streams it accepted;
            # h2's client state machine would refuse those frames, so reopen it.
            self.conn.state_machine.state = ConnectionState.CLIENT_OPEN
        return self.conn.receive_data(data)

    def _handle(self, event: h2.events.Event) -> None:
        response = self.responses.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings_received.set()
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_opened.set()
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks += 1
            self.ping_acked.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
            self.goaway_received.set()
        elif response is None:
            return
        elif isinstance(event, h2.events.InformationalResponseReceived):
            response.informational.append(list(event.headers))
        elif isinstance(event, h2.events.ResponseReceived):
            headers = list(event.headers)
            response.status = int(dict(headers)[b":status"])
            response.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
            response.head_arrived.set()
        elif isinstance(event, h2.events.DataReceived):
            response.body += event.data
            response.data_arrived.set()
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            response.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            response.done.set()
        elif isinstance(event, h2.events.StreamReset):
            response.reset_code = int(event.error_code)
            response.done.set()

    def start(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        end_stream: bool = True,
        pseudo: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        block = pseudo or [
            (b":method", method.encode()),
            (b":scheme", b"https" if self.ssl_object else b"http"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ]
        self.responses[stream_id] = Response()
        self.conn.send_headers(stream_id, [*block, *(headers or [])], end_stream=end_stream)
        self.flush()
        return stream_id

    async def send_body(self, stream_id: int, body: bytes, end_stream: bool = True) -> None:
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self.window_opened.clear()
                await asyncio.wait_for(self.window_opened.wait(), TIMEOUT)
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end_stream:
            self.conn.end_stream(stream_id)
            self.flush()

    async def response(self, stream_id: int) -> Response:
        response = self.responses[stream_id]
        await asyncio.wait_for(response.done.wait(), TIMEOUT)
        return response

    async def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> Response:
        stream_id = self.start(path, method, headers, end_stream=not body)
        if body:
            await self.send_body(stream_id, body)
        return await self.response(stream_id)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(Exception):
                self.conn.close_connection()
                self.flush()
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), TIMEOUT)
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, TIMEOUT)


@contextlib.asynccontextmanager
async def h2_client(
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    settings: dict[int, int] | None = None,
    auto_ack: bool = True,
) -> AsyncIterator[H2Client]:
    client = H2Client(auto_ack=auto_ack)
    await client.connect(port, ssl_context, settings)
    try:
        yield client
    finally:
        await client.close()


INITIAL_WINDOW_SIZE = h2.settings.SettingCodes.INITIAL_WINDOW_SIZE
ENABLE_CONNECT_PROTOCOL = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL


async def run_process(
    *argv: str, limit: float = 30.0, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run a command-line client for at most ``limit`` seconds; (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout, stderr
