"""Helpers for server tests: an in-process server, raw-socket HTTP, and test apps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from headrace._types import ASGIApp, Receive, Scope, Send
from headrace.server.config import Config
from headrace.server.connection import Wires
from headrace.server.server import WIRES, Server
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
WAIT = 10.0


@contextlib.asynccontextmanager
async def serve(app: ASGIApp, wires: Wires = WIRES, **options: Any) -> AsyncIterator[Server]:
    """Run a headrace server for ``app`` on a free port inside the running loop.

    ``wires``: the wire adapters it speaks (all of them unless a test serves fewer)."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", free_port())
    options.setdefault("lifespan", "off")
    options.setdefault("timeout_graceful_shutdown", 2)
    server = Server(Config(**options), app, wires=wires)
    task = asyncio.create_task(server.serve())
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield server
    finally:
        server.shutdown()
        await asyncio.wait_for(task, WAIT)


def url(server: Server, path: str = "/") -> str:
    host, port = server.addresses[0][:2]
    return f"http://{host}:{port}{path}"


def port_of(server: Server) -> int:
    return int(server.addresses[0][1])


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, **options: Any) -> Iterator[Server]:
    """Run a server in a background thread (for blocking clients, e.g. Hypothesis tests)."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", free_port())
    options.setdefault("lifespan", "off")
    server = Server(Config(**options), app)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(server.serve())
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
            server.started.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert server.started.wait(WAIT)
    if errors:
        raise errors[0]
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(WAIT)


# -- raw sockets --------------------------------------------------------------------------------


async def open_raw(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(server))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read one HTTP/1.1 response (Content-Length, chunked or close-delimited)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if status in (100, 101, 204, 304):
        return status, headers, b""
    if b"content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), WAIT)
    elif headers.get(b"transfer-encoding") == b"chunked":
        body = await read_chunked(reader)
    else:
        body = await asyncio.wait_for(reader.read(), WAIT)
    return status, headers, body


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), WAIT)
        size = int(size_line.strip(), 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), WAIT)
        if size == 0:
            return b"".join(parts)
        parts.append(data[:-2])


async def raw_exchange(server: Server, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    reader, writer = await open_raw(server)
    try:
        writer.write(request)
        return await read_response(reader)
    finally:
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), WAIT)


# -- apps -----------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the scope as JSON (bytes as latin-1 strings) plus the body it received."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = _jsonable({key: value for key, value in scope.items() if key != "state"})
    payload["body"] = body.decode("latin-1")
    payload["state"] = _jsonable(dict(scope.get("state", {})))
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Streams the request body back, chunk by chunk (a chunked response)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        await send(
            {"type": "http.response.body", "body": message.get("body", b""), "more_body": True}
        )
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


async def text_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


# -- subprocess servers ---------------------------------------------------------------------------


def headrace_process(
    *args: str, pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "headrace", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        env=environment,
    )


def wait_for_listening(process: subprocess.Popen[bytes], needle: bytes = b"Listening on") -> bytes:
    """Read stderr lines until the server says it listens (bounded by WAIT via a watchdog)."""
    assert process.stderr is not None
    timer = threading.Timer(WAIT, process.kill)
    timer.start()
    seen = b""
    try:
        for line in iter(process.stderr.readline, b""):
            seen += line
            if needle in line:
                return seen
    finally:
        timer.cancel()
    raise AssertionError(f"server did not start: {seen.decode(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate(timeout=WAIT)


def blocking_request(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """Send a raw request and read until the server closes (Connection: close requests)."""
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
