"""The hub protocol: length-prefixed frames carrying ``marshal``-encoded tuples.

A frame is a 4-byte big-endian length followed by ``marshal.dumps(tuple)``. ``marshal`` is in the
standard library, is the fastest encoder of the types a channel message may hold (dict, list,
tuple, str, bytes, int, float, bool, None) and refuses anything else. Both ends run on the same
host as the same user (the socket lives in a ``0700`` directory), so the usual caveat about
unmarshalling untrusted bytes does not apply.

Requests (client → hub) are ``(op, request_id, *arguments)``; replies (hub → client) are
``(request_id, status, value)``. A ``group_send`` answers every parked receive of one client in
a single ``DELIVER_MANY`` frame that carries the payload once with the list of request ids.
Message payloads travel as opaque ``bytes``: the hub never decodes them, it only routes them.

Protocol versions (the client announces its version in HELLO, the hub answers with its own):
1 one reply per receive; 2 adds ``DELIVER_MANY``; 3 adds *watched* process-local channels: a
client WATCHes a ``!`` channel once, under a small watch id of its choosing, and the hub then
PUSHes every message for it without a receive per message (one frame per payload per client,
listing the watch ids it is for). Pushed messages that came from ``send`` are *counted*: the
client reports them CONSUMED, so the hub can enforce the channel's capacity exactly.
4 adds group history and presence: HELLO also carries the client's id, its ``history`` /
``presence`` options and its ``expiry``; GROUP_SEND answers the message's position; GROUP_ADD may
carry presence info; GROUP_HISTORY, PRESENCE, PRESENCE_COUNT and BEAT are new. A client with
history or presence configured refuses a hub older than 4.
5 adds RECEIVE_ANY: one parked receive over several normal channels, answered with the message
and the channel it came from (never batched into ``DELIVER_MANY``); CANCEL of its request id
withdraws it from every channel. A client facing an older hub receives those channels one by
one instead (``receive_any`` answers ``None``).

Positions on delivered messages. The hub stamps ``[epoch, offset]`` into a group message
without decoding it: a marshalled dict ends with the ``0`` (TYPE_NULL) byte that closes it, so
the stamped payload is the payload minus that byte, the key and the value marshalled without
references (format version 2), and the closing byte (:func:`stamp_payload`).
"""

from __future__ import annotations

import asyncio
import marshal
import struct
from collections.abc import Callable
from typing import Any, cast

from headrace.layers.history import POSITION_KEY

__all__ = [
    "PROTOCOL_ANY",
    "PROTOCOL_BATCHED",
    "PROTOCOL_FEATURES",
    "PROTOCOL_VERSION",
    "PROTOCOL_WATCH",
    "FramedProtocol",
    "Op",
    "Status",
    "decode_message",
    "encode_frame",
    "encode_message",
    "stamp_payload",
]

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024
PROTOCOL_BATCHED = 2  # the protocol version from which clients understand DELIVER_MANY
PROTOCOL_WATCH = 3  # the protocol version from which hubs and clients speak WATCH/PUSH
PROTOCOL_FEATURES = 4  # the protocol version from which hubs keep history and presence
PROTOCOL_ANY = 5  # the protocol version from which hubs take RECEIVE_ANY
PROTOCOL_VERSION = PROTOCOL_ANY  # what this code speaks


class Op:
    """Request opcodes (small ints keep frames short)."""

    HELLO = 1  # (capacity, [(regex source, capacity), ...], protocol[, client id, history
    # and presence options, expiry seconds]) - capacity rules and the client's protocol version
    # (absent from old clients: no DELIVER_MANY for them); answered OK with the hub's protocol
    # version (``None`` from hubs before version 3)
    SEND = 2  # (channel, payload, expiry seconds)
    RECEIVE = 3  # (channel,) - answered when a message is available
    CANCEL = 4  # (channel, receive request id) - the RECEIVE (or RECEIVE_ANY: any one of its
    # channels) gets CANCELLED or its message
    PUSH_FRONT = 5  # (channel, payload, expires_at[, counted]) - no reply; undo a delivery
    # (a cancelled receive's, or a watched channel's buffered messages handed back)
    GROUP_ADD = 6  # (group, channel, expires_at[, presence info, announce]) - with info in a
    # group with presence, the member's info (announce False: a replay, no join event)
    GROUP_DISCARD = 7  # (group, channel)
    GROUP_SEND = 8  # (group, payload, expiry seconds) - answered OK with (epoch, offset) in a
    # group with history, else None
    FLUSH = 9  # ()
    WATCH = 10  # (channel, watch id) - no reply; push this channel's messages from now on
    UNWATCH = 11  # (channel, watch id) - answered OK once no more pushes for it will follow
    CONSUMED = 12  # ([channel, ...]) - no reply; counted pushes the receivers have taken
    DETACH = 13  # () - stop every watch of this connection; answered OK after the last push
    STATISTICS = 14  # (channel or None) - answered OK with (messages, messages last second,
    # full, full last second, pending, expires_at of the oldest pending message or None)
    GROUP_HISTORY = 15  # (group, since epoch or None, since offset, limit or None) - answered
    # OK with (epoch, newest offset, [(offset, payload), ...], recovered)
    PRESENCE = 16  # (group,) - answered OK with {channel: info}
    PRESENCE_COUNT = 17  # (group,) - answered OK with the number of members
    BEAT = 18  # () - no reply; the presence members this client added are alive
    RECEIVE_ANY = 19  # ([channel, ...],) - answered OK with (payload, expires_at, channel) by
    # the first message of any of them (queued ones are looked at in the order given)


class Status:
    """Reply statuses."""

    OK = 0
    FULL = 1
    ERROR = 2
    CANCELLED = 3  # the answer to a RECEIVE that CANCEL removed before any message came
    # Unsolicited (request id 0): one group message for several parked RECEIVEs of one client,
    # value ``(receive request ids, payload, expires_at)``; each id is answered as if by OK.
    DELIVER_MANY = 4
    # Unsolicited: ``(watch ids, payload, expires_at, counted)``, a message for watched channels.
    PUSH = 5
    # Unsolicited: ``watch id``; another connection now watches that channel.
    DISPLACED = 6


def encode_frame(item: tuple[Any, ...]) -> bytes:
    body = marshal.dumps(item)
    return HEADER.pack(len(body)) + body


def encode_message(message: dict[str, Any]) -> bytes:
    """Serialise a layer message; ``TypeError`` names what cannot be carried."""
    try:
        return marshal.dumps(message)
    except ValueError as exc:
        raise TypeError(f"message cannot be serialised for the IPC layer: {exc}") from None


_POSITION_KEY_BYTES = marshal.dumps(POSITION_KEY, 2)
_DICT_CODES = (ord("{"), ord("{") | 0x80)  # TYPE_DICT, with or without FLAG_REF


def stamp_payload(payload: bytes, epoch: str, offset: int) -> bytes:
    """``payload`` (a marshalled dict) with ``[epoch, offset]`` under POSITION_KEY."""
    if payload[:1] and payload[0] in _DICT_CODES and payload[-1:] == b"0":
        return b"".join(
            (payload[:-1], _POSITION_KEY_BYTES, marshal.dumps([epoch, offset], 2), b"0")
        )
    message = decode_message(payload)  # not produced by encode_message: take the long way
    message[POSITION_KEY] = [epoch, offset]
    return marshal.dumps(message)


def decode_message(payload: bytes) -> dict[str, Any]:
    message: dict[str, Any] = marshal.loads(payload)
    return message


class FramedProtocol(asyncio.Protocol):
    """Splits a byte stream into decoded frames and hands each to ``on_frame``."""

    def __init__(self, on_frame: Callable[[tuple[Any, ...]], None]) -> None:
        self._buffer = bytearray()
        self._on_frame = on_frame
        self._outgoing: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (size,) = HEADER.unpack_from(buffer, start)
            if size > MAX_FRAME:
                self._protocol_error()
                return
            if end - start - 4 < size:
                break
            try:
                item = marshal.loads(memoryview(buffer)[start + 4 : start + 4 + size])
            except (ValueError, EOFError, TypeError):
                self._protocol_error()
                return
            start += 4 + size
            if not isinstance(item, tuple):
                self._protocol_error()
                return
            self._on_frame(item)
        if start:
            del buffer[:start]

    def write(self, item: tuple[Any, ...]) -> None:
        """Queue a frame; frames queued in one loop iteration leave in one ``write`` call
        (a fan-out to a thousand members is one system call, not a thousand)."""
        if self.transport is None or self.transport.is_closing():
            return
        outgoing = self._outgoing
        outgoing.append(encode_frame(item))
        if len(outgoing) == 1 and self._loop is not None:
            self._loop.call_soon(self._flush)

    def _reserve(self) -> int:
        """Keep a place in the outgoing stream for a frame :meth:`_compose` fills in at flush
        time (so frames queued later in the same iteration can still join it); its index."""
        outgoing = self._outgoing
        outgoing.append(b"")
        if len(outgoing) == 1 and self._loop is not None:
            self._loop.call_soon(self._flush)
        return len(outgoing) - 1

    def _compose(self, outgoing: list[bytes]) -> None:
        """Fill the places :meth:`_reserve` kept, just before ``outgoing`` is written."""

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        self._compose(outgoing)
        if outgoing and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(outgoing))

    def _protocol_error(self) -> None:
        self._buffer.clear()
        if self.transport is not None:
            self.transport.close()
