"""Group messages with positions on a Channels-1 WebSocket: stamping, holding, ordering.

Theory of operation
-------------------
In Channels 1.x a group's messages go from the layer straight to the interface server's reply
channel, so only the interface server can put them in order for a client that reconnects. The
layers do not order a group's deliveries against direct sends to the same channel (a process
gets group messages through its own inbox), so the hold cannot start with a message:

* a client that reconnects with a ``positions`` query parameter (the JavaScript bridge always
  sends one, ``{}`` at first) is held from the start: replies carrying a position
  (``__position__``: the layer's live deliveries) are kept back;
* the worker's first reply decides: a 1.x consumer with ``group_recovery`` first sends
  ``{"recovery": "hold"}`` (the hold stays; without the parameter it starts here), then the
  recovery frames, the missed messages read from the history (positioned replies, held as
  well), and finally ``{"recovery": {epoch: offset, ...}}``: per epoch, the position the client
  already has. Any other first reply (a consumer that does not recover) ends the hold at once;
* on release, the held replies are sorted by offset (per epoch, epochs in the order first
  seen), those at or below what the client has and repeats are dropped, and the rest are
  applied. Later positioned replies are applied unless already sent (no duplicate). Presence
  events are held too and applied first, so they follow the member list sent before.

A positioned text reply whose text is a JSON object gets ``"__position__": [epoch, offset]``
as its first member (spliced in, the text is not parsed), so the client can resume from it.
A ``presence.join`` / ``presence.leave`` message of the layer becomes the text frame
``{"__presence__": {"group", "event": "join" | "leave", "channel", "info"}}``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from headrace.interface.messages import BadReply

__all__ = ["MAX_HELD", "PositionedReplies", "is_special", "wants_positions"]

POSITION = "__position__"
RECOVERY = "recovery"
PRESENCE_TYPES = {"presence.join": "join", "presence.leave": "leave"}
MAX_HELD = 100_000
"""Held replies beyond this are applied in arrival order (a worker that never releases)."""


def wants_positions(query_string: bytes) -> bool:
    """Whether the client asked for recovery (a ``positions`` query parameter)."""
    return b"positions=" in query_string and "positions" in parse_qs(query_string.decode("latin-1"))


def is_special(reply: dict[str, Any]) -> bool:
    """Whether ``reply`` needs :class:`PositionedReplies` (the common reply does not)."""
    return POSITION in reply or RECOVERY in reply or reply.get("type") in PRESENCE_TYPES


def presence_frame(event: dict[str, Any]) -> dict[str, Any]:
    kind = PRESENCE_TYPES[event["type"]]
    body = {
        "group": event.get("group"),
        "event": kind,
        "channel": event.get("channel"),
        "info": event.get("info"),
    }
    return {"text": json.dumps({"__presence__": body})}


def stamped(reply: dict[str, Any], epoch: str, offset: int) -> dict[str, Any]:
    """``reply`` without its position key, its JSON-object text carrying the position."""
    plain = {key: value for key, value in reply.items() if key != POSITION}
    text = plain.get("text")
    if isinstance(text, str):
        body = text.lstrip()
        if body.startswith("{"):
            rest = body[1:]
            separator = "" if rest.lstrip().startswith("}") else ","
            position = json.dumps([epoch, offset])
            plain["text"] = f'{{"{POSITION}":{position}{separator}{rest}'
    return plain


def _position_of(reply: dict[str, Any]) -> tuple[str, int]:
    value = reply[POSITION]
    if isinstance(value, list | tuple) and len(value) == 2:
        epoch, offset = value
        if isinstance(epoch, str) and isinstance(offset, int):
            return epoch, offset
    raise BadReply(f"'{POSITION}' must be [epoch, offset], not {value!r}")


class PositionedReplies:
    """One connection's held and sent positions (see the module docs)."""

    __slots__ = ("held", "held_presence", "holding", "provisional", "sent")

    def __init__(self, hold_from_start: bool = False) -> None:
        self.holding = self.provisional = hold_from_start
        self.held: list[tuple[str, int, dict[str, Any]]] = []
        self.held_presence: list[dict[str, Any]] = []
        self.sent: dict[str, int] = {}

    def admit(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        """The replies to apply now, in order, for ``reply`` (a special one, or any while the
        hold is provisional)."""
        if reply.get("type") in PRESENCE_TYPES:
            if self.holding and len(self.held_presence) < MAX_HELD:
                self.held_presence.append(presence_frame(reply))
                return []
            return [presence_frame(reply)]
        if RECOVERY in reply:
            return self._control(reply[RECOVERY])
        if POSITION not in reply:  # the worker's first reply, and it is not a hold
            self.provisional = False
            return [reply, *self._release({})]
        epoch, offset = _position_of(reply)
        if self.holding and len(self.held) < MAX_HELD:
            self.held.append((epoch, offset, reply))
            return []
        return self._send_new(epoch, offset, reply)

    def _control(self, value: object) -> list[dict[str, Any]]:
        if value == "hold":
            self.holding, self.provisional = True, False
            return []
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in value.items()
        ):
            raise BadReply(f"'recovery' must be 'hold' or {{epoch: offset}}, not {value!r}")
        return self._release(value)

    def _release(self, has: dict[str, int]) -> list[dict[str, Any]]:
        self.holding = False
        for epoch, offset in has.items():
            self.sent[epoch] = max(offset, self.sent.get(epoch, 0))
        first_seen: dict[str, int] = {}
        for epoch, _, _ in self.held:
            first_seen.setdefault(epoch, len(first_seen))
        held = sorted(self.held, key=lambda entry: (first_seen[entry[0]], entry[1]))
        self.held = []
        released, self.held_presence = self.held_presence, []
        for epoch, offset, reply in held:
            released.extend(self._send_new(epoch, offset, reply))
        return released

    def _send_new(self, epoch: str, offset: int, reply: dict[str, Any]) -> list[dict[str, Any]]:
        if offset <= self.sent.get(epoch, 0):
            return []
        self.sent[epoch] = offset
        return [stamped(reply, epoch, offset)]
