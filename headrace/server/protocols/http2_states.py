"""The HTTP/2 stream life cycle (RFC 9113 §5.1) as data.

I/O-free. Each stream of :class:`headrace.server.protocols.http2.H2Protocol` is in one of the
RFC's seven states and moves only along :data:`TRANSITIONS`, seen from the server::

                         recv HEADERS
                idle ─────────────────────▶ open
                                             │ ╲
                               recv END_STREAM│  ╲ send END_STREAM
                                             ▼    ▼
                          half-closed (remote)    half-closed (local)
                                  │ send END_STREAM      │ recv END_STREAM
                                  ▼                      ▼
                                closed ◀── send/recv RST_STREAM (from any but idle)

The reserved states belong to server push, which headrace never does (``SETTINGS_ENABLE_PUSH``
is irrelevant to a server that sends no ``PUSH_PROMISE``, and a client may not push): they are
in the table for completeness, and no event of this server leads into them. A pair missing
from the table is not a legal move; the protocol checks the frame rules that prevent it (for
example DATA after the peer's ``END_STREAM`` is ``STREAM_CLOSED``) before it applies an event,
so :func:`next_state` raising means a bug, never the peer's doing.

The table is compiled into a tuple indexed by state then event, so a transition costs two
index operations and no allocation.
"""

from __future__ import annotations

from enum import IntEnum


class StreamState(IntEnum):
    IDLE = 0
    RESERVED_LOCAL = 1
    RESERVED_REMOTE = 2
    OPEN = 3
    HALF_CLOSED_LOCAL = 4
    HALF_CLOSED_REMOTE = 5
    CLOSED = 6


class StreamEvent(IntEnum):
    RECV_HEADERS = 0
    SEND_PUSH_PROMISE = 1
    RECV_PUSH_PROMISE = 2
    SEND_HEADERS = 3
    RECV_END_STREAM = 4
    SEND_END_STREAM = 5
    SEND_RST_STREAM = 6
    RECV_RST_STREAM = 7


S, E = StreamState, StreamEvent

TRANSITIONS: dict[tuple[StreamState, StreamEvent], StreamState] = {
    (S.IDLE, E.RECV_HEADERS): S.OPEN,
    (S.IDLE, E.SEND_PUSH_PROMISE): S.RESERVED_LOCAL,
    (S.IDLE, E.RECV_PUSH_PROMISE): S.RESERVED_REMOTE,
    (S.RESERVED_LOCAL, E.SEND_HEADERS): S.HALF_CLOSED_REMOTE,
    (S.RESERVED_LOCAL, E.SEND_RST_STREAM): S.CLOSED,
    (S.RESERVED_LOCAL, E.RECV_RST_STREAM): S.CLOSED,
    (S.RESERVED_REMOTE, E.RECV_HEADERS): S.HALF_CLOSED_LOCAL,
    (S.RESERVED_REMOTE, E.SEND_RST_STREAM): S.CLOSED,
    (S.RESERVED_REMOTE, E.RECV_RST_STREAM): S.CLOSED,
    (S.OPEN, E.SEND_HEADERS): S.OPEN,
    (S.OPEN, E.RECV_END_STREAM): S.HALF_CLOSED_REMOTE,
    (S.OPEN, E.SEND_END_STREAM): S.HALF_CLOSED_LOCAL,
    (S.OPEN, E.SEND_RST_STREAM): S.CLOSED,
    (S.OPEN, E.RECV_RST_STREAM): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, E.RECV_END_STREAM): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, E.SEND_RST_STREAM): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, E.RECV_RST_STREAM): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, E.SEND_HEADERS): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, E.SEND_END_STREAM): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, E.SEND_RST_STREAM): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, E.RECV_RST_STREAM): S.CLOSED,
    # A stream both sides ended stays known while its application runs; a reset then (ours,
    # or the peer's, sent before it saw our END_STREAM) changes nothing.
    (S.CLOSED, E.SEND_RST_STREAM): S.CLOSED,
    (S.CLOSED, E.RECV_RST_STREAM): S.CLOSED,
}
"""Every legal (state, event) → next state of RFC 9113 §5.1 (server side)."""

REMOTE_CLOSED = frozenset((S.HALF_CLOSED_REMOTE, S.CLOSED))
"""States in which the peer sends nothing more on the stream (no DATA, no trailers)."""
LOCAL_CLOSED = frozenset((S.HALF_CLOSED_LOCAL, S.CLOSED))
"""States in which the server sends nothing more on the stream."""

TABLE: tuple[tuple[StreamState | None, ...], ...] = tuple(
    tuple(TRANSITIONS.get((state, event)) for event in StreamEvent) for state in StreamState
)
"""``TABLE[state][event]``: :data:`TRANSITIONS` compiled (None where the move is illegal)."""
IS_REMOTE_CLOSED: tuple[bool, ...] = tuple(state in REMOTE_CLOSED for state in StreamState)
IS_LOCAL_CLOSED: tuple[bool, ...] = tuple(state in LOCAL_CLOSED for state in StreamState)


class IllegalTransition(RuntimeError):
    """An event the stream's state does not allow (a bug: frame rules are checked first)."""


def next_state(state: StreamState, event: StreamEvent) -> StreamState:
    """The state ``event`` moves a stream in ``state`` to."""
    following = TABLE[state][event]
    if following is None:
        raise IllegalTransition(f"{event.name} in state {state.name}")
    return following
