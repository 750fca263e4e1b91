"""What a server start loads: the plain HTTP/1.1 path must not import the other wires' code.

Startup to the first response is a benchmark target (benchmarks/startup.py); most of it is
imports. The HTTP/2 frame layer and HPACK, the WebSocket protocol and stream layer (and the
``websockets`` C helper it loads), the ``email`` package, the workers supervisor and the
reloader, and the framework or layer packages load only when something uses them. This test
starts the real ``headrace`` command line in a fresh interpreter, answers one plain request,
and reads that interpreter's ``sys.modules``; then an h2c and a WebSocket client connect and
the same check shows the deferred modules do load when used (so the probe sees imports at all).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import free_port

DEFERRED = (
    "email",
    "hpack",
    "websockets",
    "headrace.server.protocols.http2",
    "headrace.server.wires.http2",
    "headrace.server.protocols.websocket",
    "headrace.server.streams.websocket",
    "headrace.server.wires.websocket_h1",
    "headrace.server.supervisor",
    "headrace.server.reload",
    "headrace.asgi",
    "headrace.layers",
    "django",
    "redis",
    "msgpack",
)
"""Modules the plain HTTP/1.1 start path must not import."""

LOADED_BY_HTTP2 = ("hpack", "headrace.server.wires.http2")
LOADED_BY_WEBSOCKET = ("headrace.server.streams.websocket", "headrace.server.wires.websocket_h1")

PROBE = textwrap.dedent(
    """
    import json, os, signal, socket, sys, threading, time

    from headrace.server.cli import main

    WATCHED = {watched!r}
    PORT = {port}


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return  # lifespan unsupported: the server goes on without it
        if scope["type"] == "websocket":
            await receive()
            await send({{"type": "websocket.accept"}})
            return
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": b"ok"}})


    def exchange(request):
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", PORT), timeout=30) as sock:
                    sock.sendall(request)
                    return sock.recv(256)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)


    def loaded():
        return sorted(name for name in WATCHED if name in sys.modules)


    def probe():
        report = {{}}
        try:
            report["http11"] = exchange(
                b"GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n"
            ).decode("latin-1")
            report["after_http11"] = loaded()
            exchange(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n" + bytes(3) + b"\\x04" + bytes(5))
            report["after_http2"] = loaded()
            exchange(
                b"GET / HTTP/1.1\\r\\nHost: t\\r\\n"
                b"Upgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
                b"Sec-WebSocket-Version: 13\\r\\n\\r\\n"
            )
            report["after_websocket"] = loaded()
        finally:
            sys.stdout.write(json.dumps(report) + "\\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGINT)


    threading.Thread(target=probe, daemon=True).start()
    main(["-v", "0", "-p", str(PORT), "__main__:app"])
    """
)


def start_and_probe() -> dict[str, object]:
    watched = sorted({*DEFERRED, *LOADED_BY_HTTP2, *LOADED_BY_WEBSOCKET})
    script = PROBE.format(watched=watched, port=free_port())
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, check=False
    )
    lines = result.stdout.decode().splitlines()
    assert lines, f"the probe printed nothing; stderr:\n{result.stderr.decode()}"
    report: dict[str, object] = json.loads(lines[-1])
    return report


def test_plain_http_start_defers_the_other_wires() -> None:
    report = start_and_probe()
    assert str(report["http11"]).startswith("HTTP/1.1 200"), report
    assert report["after_http11"] == [], (
        f"the plain HTTP/1.1 start path imported modules it does not need: {report['after_http11']}"
    )
    after_http2 = report["after_http2"]
    assert isinstance(after_http2, list)
    assert set(LOADED_BY_HTTP2) <= set(after_http2), after_http2
    after_websocket = report["after_websocket"]
    assert isinstance(after_websocket, list)
    assert set(LOADED_BY_WEBSOCKET) <= set(after_websocket), after_websocket
