"""Admission: whether a new request or WebSocket runs the application, decided once for every wire.

Theory of operation
-------------------
Before any application runs, the server may answer a request itself. :func:`refusal` is that
one decision, from ``state.settings.limits``: ``413`` for a declared body above
``--max-request-body-size``, ``503`` once ``--limit-concurrency`` applications are running.
The wires ask it and frame the answer (:func:`~headrace.server.streams.errors.server_answer`)
in their own terms (an HTTP/1.1 response, an HTTP/2 ``HEADERS`` + ``DATA``); they never
decide it.

"Running" counts every application instance the server started for a client: an HTTP request
from :meth:`HTTPStream.start <headrace.server.streams.http.HTTPStream.start>` until its app
returns, a WebSocket from :func:`open_websocket` until its app returns (as uvicorn's
``limit_concurrency`` counts every connection and task). :func:`open_websocket` is where both
WebSocket wires admit a validated handshake: refused, the transport answers the ``503`` as a
denial response (no app runs); admitted, the shared
:class:`~headrace.server.streams.websocket.WebSocketStream` starts, counted and tracked for
graceful shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from headrace._types import Scope
from headrace.server.state import ServerState
from headrace.server.streams.errors import server_answer

if TYPE_CHECKING:
    from headrace.server.protocols.websocket import HandshakeRequest
    from headrace.server.streams.websocket import WebSocketStream, WebSocketTransport


def refusal(state: ServerState, content_length: int | None, counted: bool = True) -> int:
    """The status the server answers a new request with instead of running the app, or 0.

    ``content_length``: the declared body size, when the request has one. ``counted``: check
    ``--limit-concurrency`` too (False when the caller checks it later, for the same request).
    """
    limits = state.settings.limits
    limit = limits.max_body_size
    if limit and content_length is not None and content_length > limit:
        return 413
    concurrency = limits.limit_concurrency
    if counted and concurrency is not None and state.active_requests >= concurrency:
        return 503
    return 0


def open_websocket(
    state: ServerState,
    transport: WebSocketTransport,
    scope: Scope,
    handshake: HandshakeRequest,
    on_finished: Callable[[WebSocketStream], None] | None = None,
) -> WebSocketStream | None:
    """Start the app for a valid WebSocket handshake, or refuse it (``503``; None returned).

    The WebSocket stream layer is imported here, by the first WebSocket a server admits (the
    wires calling this have loaded it already): an HTTP-only server never loads it.
    """
    from headrace.server.streams.websocket import WebSocketStream

    status = refusal(state, None)
    if status:
        answer = server_answer(status)
        transport.send_response(status, answer.headers, answer.body)
        if state.access_log is not None:
            state.access_log.websocket("rejected", scope.get("client"), scope.get("path", ""))
        return None
    stream = WebSocketStream(
        transport,
        scope,
        state.app,
        handshake,
        state.settings.websocket,
        access_log=state.access_log,
        on_finished=on_finished,
    )
    state.track_task(stream.start(), counted=True)
    return stream
