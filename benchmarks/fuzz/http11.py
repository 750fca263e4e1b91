"""Fuzz the HTTP/1.1 request path with atheris (libFuzzer): arbitrary bytes in, only answers out.

Not a test: a long-running harness. Run it bounded, e.g.::

    pip install atheris
    python3 benchmarks/fuzz/http11.py -max_total_time=300 -rss_limit_mb=4096
    python3 benchmarks/fuzz/http11.py -runs=1 CRASH_FILE     # replay one finding

Each input is split into 1-4 socket reads (the first byte chooses the split points) and fed to
a real :class:`~headrace.server.connection.Connection` / ``HTTP11Handler`` over an in-memory
transport, on one event loop, with a small echo app (HTTP and WebSocket) behind it. Then the
client "goes away" (``connection_lost``). Checked after every input:

- nothing escapes ``data_received`` / ``connection_lost`` (any exception is a finding);
- nothing is logged at ERROR by the server (``error while handling request head``,
  ``Exception in ASGI application`` are findings);
- every byte written parses as a sequence of HTTP/1.1 responses whose status is the app's
  (200, 100, 101) or a documented rejection (400, 413, 431, 501, 505; 426 from the WebSocket
  handshake);
- no app task survives the disconnect (no hang): every task finishes within the loop's bound.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ErrorRecorder, FindingError, MemoryTransport

with atheris.instrument_imports():
    import h11

    from headrace._types import Receive, Scope, Send
    from headrace.server.config import Config
    from headrace.server.connection import Connection
    from headrace.server.server import WIRES
    from headrace.server.state import ServerState

ALLOWED_STATUSES = frozenset({100, 101, 200, 400, 413, 426, 431, 501, 505})
MAX_LOOP_TURNS = 200


METHODS: list[str] = []  # the methods of the requests the app saw, in order


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        return
    METHODS.append(scope["method"])
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body[:64], "more_body": True})
    await send({"type": "http.response.body", "body": body[64:]})


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
RECORDER = ErrorRecorder()
logging.getLogger("headrace").addHandler(RECORDER)
logging.getLogger("headrace").propagate = False
CONFIG = Config(
    http2=False,  # the HTTP/1.1 path only: the preface is answered 505, h2c is not upgraded
    max_request_header_size=2048,
    max_request_body_size=4096,
    timeout_keep_alive=30,
    timeout_request_headers=30,
)


def split_points(data: bytes) -> list[bytes]:
    if not data:
        return [b""]
    selector, payload = data[0], data[1:]
    pieces = selector & 3
    if pieces == 0 or len(payload) < 2:
        return [payload]
    step = max(1, len(payload) // (pieces + 1))
    offset = (selector >> 2) % step if step > 1 else 0
    cuts = sorted({min(len(payload), offset + step * index) for index in range(1, pieces + 1)})
    chunks, start = [], 0
    for cut in cuts:
        chunks.append(payload[start:cut])
        start = cut
    chunks.append(payload[start:])
    return [chunk for chunk in chunks if chunk]


async def settle(state: ServerState) -> None:
    """Let the loop run until no app task is left (bounded)."""
    for _ in range(MAX_LOOP_TURNS):
        await asyncio.sleep(0)
        if not state.tasks:
            return


async def drive(data: bytes) -> None:
    """Feed the reads inside the running loop (as the real transport does), then hang up."""
    RECORDER.records.clear()
    METHODS.clear()
    state = ServerState(CONFIG, echo_app)
    transport = MemoryTransport()
    conn = Connection(state, LOOP, WIRES)
    conn.connection_made(transport)
    for chunk in split_points(data):
        if transport.closed:
            break
        conn.data_received(chunk)
        await settle(state)
    await settle(state)
    conn.connection_lost(None)
    await settle(state)
    if state.tasks:
        raise FindingError(f"{len(state.tasks)} app task(s) still running after disconnect")
    if RECORDER.records:
        raise FindingError(f"server logged an error: {RECORDER.records[0].getMessage()}")
    check_output(bytes(transport.output), METHODS)


def check_output(output: bytes, methods: list[str]) -> None:
    """Parse ``output`` as the responses to ``methods`` (then to rejected requests) with h11."""
    if b"Traceback" in output:
        raise FindingError("traceback on the wire")
    client = h11.Connection(h11.CLIENT)
    if output:  # receive_data(b"") would mean EOF
        client.receive_data(output)
    pending = list(methods)
    while True:
        if not pending:
            check_rejection(client, output)
            return
        method = pending.pop(0)
        # Every request "proposes" an upgrade, so that h11 accepts a 101 wherever it comes.
        headers = [("Host", "x"), ("Connection", "upgrade"), ("Upgrade", "websocket")]
        client.send(h11.Request(method=method, target="/", headers=headers))
        client.send(h11.EndOfMessage())
        status = read_one_response(client, output)
        if status is None or status == 101:
            return
        if client.their_state is not h11.DONE:
            if client.trailing_data[0]:
                raise FindingError(f"bytes after a closing response: {output[:300]!r}")
            return
        client.start_next_cycle()


def check_rejection(client: h11.Connection, output: bytes) -> None:
    """What follows the app's responses: nothing, or one server rejection, then the close.

    A rejection answers a request the app never saw, so its method is unknown here: parse it as
    the answer to HEAD, then accept either no body (it was a HEAD) or exactly Content-Length
    bytes of it.
    """
    headers = [("Host", "x"), ("Connection", "upgrade"), ("Upgrade", "websocket")]
    client.send(h11.Request(method="HEAD", target="/", headers=headers))
    client.send(h11.EndOfMessage())
    try:
        event = client.next_event()
        while isinstance(event, h11.InformationalResponse):
            event = client.next_event()
    except h11.RemoteProtocolError as exc:
        raise FindingError(f"malformed response bytes: {exc}: {output[:300]!r}") from exc
    if not isinstance(event, h11.Response):
        return
    if event.status_code not in ALLOWED_STATUSES or event.status_code < 400:
        raise FindingError(f"unexpected status {event.status_code}: {output[:300]!r}")
    length = dict(event.headers).get(b"content-length")
    rest = client.trailing_data[0]
    if length is None or len(rest) not in (0, int(length)):
        raise FindingError(f"badly framed rejection: {output[:300]!r}")


def read_one_response(client: h11.Connection, output: bytes) -> int | None:
    """The final status of the next response (None when the output ends before one starts)."""
    status = None
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError as exc:
            raise FindingError(f"malformed response bytes: {exc}: {output[:300]!r}") from exc
        if (
            event is h11.NEED_DATA
            and status is not None
            and not client.they_are_waiting_for_100_continue
        ):
            if client.trailing_data[1]:
                raise FindingError(f"response cut short: {output[:300]!r}")
            client.receive_data(b"")  # the connection is gone: ends a close-delimited body
            continue
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return status
        if isinstance(event, h11.InformationalResponse | h11.Response):
            if event.status_code not in ALLOWED_STATUSES:
                raise FindingError(f"unexpected status {event.status_code}: {output[:300]!r}")
            if event.status_code == 101:
                return 101
            if isinstance(event, h11.Response):
                status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status


def test_one_input(data: bytes) -> None:
    LOOP.run_until_complete(drive(data))
    # Timers (keep-alive, header deadline) belong to dead connections: drop them.
    for handle in list(getattr(LOOP, "_scheduled", ())):
        handle.cancel()


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
