"""Groups with recovery after reconnect and presence, for the async JSON WebSocket consumer.

Theory of operation
-------------------
A client that was connected before reconnects with the newest position it saw per group, in
the query string: ``?positions=<URL-encoded JSON {"group": ["epoch", offset], ...}>`` (the
JavaScript WebSocketBridge builds it).
:meth:`RecoveringJsonWebsocketConsumer.join_group` then

1. ``group_add``\\ s the consumer's channel (with the presence ``info``), so live messages of the
   group start queueing on the channel: the consumer dispatches one message at a time, so they
   wait there while this handler runs: the queue is the buffer;
2. reads ``group_history`` since the client's position and sends every missed message through
   the application's own handler (``chat.message`` → ``chat_message``) in order, each marked
   with its position;
3. sends the recovery frame ``{"__recovery__": {"group", "epoch", "offset", "recovered"}}``
   (``recovered`` is True, False when the history no longer holds what the client missed — it
   should reload — or None for a client that gave no position: its position is read before the
   join and it gets what was sent after that read, so nothing is lost in between).

Called before ``accept()``, ``join_group`` joins at once (the client is a member by the time
its handshake completes) and sends the join's frames right after the accept.

Every message of the group the consumer dispatches afterwards goes through one cursor per group
(``epoch``, newest ``offset`` sent): an offset at or below the cursor is a duplicate and dropped;
one past it is delivered; a larger one means live delivery lost messages (a full channel), and
the gap is filled from the history first. The layer's messages do not name their group, so the
cursor is found by the message's epoch; an epoch no cursor knows is looked up once (a group whose
history was lost and restarted: the client gets ``recovered: False`` and the new epoch).

Each frame sent by ``send_json`` while a group message is handled carries
``"__position__": [epoch, offset]`` (JSON objects only), so the client can resume from it.

Presence: ``join_group(group, info=...)`` records ``info``; ``group_presence(group)`` reads
the members; with ``forward_presence = True`` the client gets the member list when it joins
(before the recovery frame), ``{"__presence__": {"group", "event": "members", "members":
{channel: info}}}``, then one frame per ``presence.join`` / ``presence.leave`` (``"event":
"join" | "leave"``, ``channel``, ``info``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from headrace._types import Message
from headrace.generic.websocket import AsyncJsonWebsocketConsumer, Headers
from headrace.layers import BaseChannelLayer
from headrace.layers.history import POSITION_KEY, Position

__all__ = [
    "POSITIONS_PARAMETER",
    "PRESENCE_KEY",
    "RECOVERY_KEY",
    "RecoveringJsonWebsocketConsumer",
    "parse_positions",
]

POSITIONS_PARAMETER = "positions"
RECOVERY_KEY = "__recovery__"
PRESENCE_KEY = "__presence__"


def parse_positions(query_string: bytes | str) -> dict[str, Position]:
    """The client's ``positions`` query parameter as ``{group: Position}`` ({} when absent);
    a malformed value raises ValueError naming the parameter."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get(POSITIONS_PARAMETER)
    if not values:
        return {}
    try:
        decoded = json.loads(values[-1])
    except ValueError as exc:
        raise ValueError(
            f"the {POSITIONS_PARAMETER!r} query parameter is not JSON: {exc}"
        ) from None
    if not isinstance(decoded, dict):
        raise ValueError(f"the {POSITIONS_PARAMETER!r} query parameter must be a JSON object")
    return {group: _position(group, value) for group, value in decoded.items()}


def _position(group: str, value: object) -> Position:
    if isinstance(value, list) and len(value) == 2:
        epoch, offset = value
        if isinstance(epoch, str) and type(offset) is int and offset >= 0:
            return Position(epoch, offset)
    raise ValueError(
        f"the {POSITIONS_PARAMETER!r} query parameter's entry for {group!r} must be "
        f"[epoch, offset >= 0], not {value!r}"
    )


@dataclass(slots=True)
class _Cursor:
    """The newest position of ``group`` sent to this client."""

    group: str
    epoch: str
    offset: int


class RecoveringJsonWebsocketConsumer(AsyncJsonWebsocketConsumer):
    """An async JSON WebSocket consumer whose ``join_group`` recovers what a reconnecting
    client missed and records presence (see the module docs and
    docs/history-presence.md for an example)."""

    forward_presence: bool = False
    """Send the member list and presence events to the client (a class or instance setting)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors: dict[str, _Cursor] = {}
        self._by_epoch: dict[str, _Cursor] = {}
        self._foreign_epochs: set[str] = set()
        self._joined: list[str] = []
        self._stamp: list[Any] | None = None
        self._client_positions: dict[str, Position] | None = None
        self._accepted = False
        self._after_accept: list[Callable[[], Awaitable[None]]] = []

    # -- the API ------------------------------------------------------------------------------

    @property
    def client_positions(self) -> dict[str, Position]:
        """The positions the client reconnected with (parsed once from the query string)."""
        if self._client_positions is None:
            self._client_positions = parse_positions(self.scope.get("query_string", b""))
        return self._client_positions

    async def join_group(
        self, group: str, info: dict[str, Any] | None = None, recover: bool = True
    ) -> None:
        """Join ``group``: recover what the client missed when ``recover`` (the group needs
        history), record ``info`` when the group has presence. Called before ``accept()``, the
        frames of the join (member list, missed messages, recovery frame) follow the accept."""
        layer = self._layer()
        since = self.client_positions.get(group) if recover else None
        fresh = recover and since is None
        if fresh:  # read where the client starts before joining: nothing after it is missed
            start = await layer.group_history(group, limit=0)
            since = Position(start.epoch, start.offset)
        if info is None:
            await layer.group_add(group, self.channel_name)
        else:
            await layer.group_add(group, self.channel_name, info=info)
        self._joined.append(group)
        self._in_groups = True
        frames = functools.partial(self._send_join_frames, layer, group, since, fresh)
        if self._accepted:
            await frames()
        else:
            self._after_accept.append(frames)

    async def accept(self, subprotocol: str | None = None, headers: Headers | None = None) -> None:
        await super().accept(subprotocol, headers)
        self._accepted = True
        pending, self._after_accept = self._after_accept, []
        for frames in pending:
            await frames()

    async def leave_group(self, group: str) -> None:
        """Leave ``group`` (groups joined with join_group are left on disconnect anyway)."""
        await self._layer().group_discard(group, self.channel_name)
        if group in self._joined:
            self._joined.remove(group)
        cursor = self._cursors.pop(group, None)
        if cursor is not None:
            self._by_epoch.pop(cursor.epoch, None)

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        """``{channel: info}`` of the members of ``group`` (a group with presence)."""
        return await self._layer().group_presence(group)

    async def send_json(self, content: Any, close: bool | int = False) -> None:
        if self._stamp is not None and isinstance(content, dict):
            content = {**content, POSITION_KEY: self._stamp}
        await super().send_json(content, close)

    async def presence_join(self, event: Message) -> None:
        """``presence.join`` from the layer: forwarded when ``forward_presence``."""
        await self._forward_presence_event("join", event)

    async def presence_leave(self, event: Message) -> None:
        """``presence.leave`` from the layer: forwarded when ``forward_presence``."""
        await self._forward_presence_event("leave", event)

    # -- recovery -----------------------------------------------------------------------------

    async def _send_join_frames(
        self, layer: BaseChannelLayer, group: str, since: Position | None, fresh: bool
    ) -> None:
        if self.forward_presence:
            members = await layer.group_presence(group)
            await self._send_presence(group, "members", members=members)
        if since is None:
            return
        history = await layer.group_history(group, since=since)
        if not history.recovered:
            cursor = self._track(group, history.epoch, history.offset)
            await self._send_recovery(cursor, None if fresh else False)
            return
        cursor = self._track(group, history.epoch, since.offset)
        await self._replay(cursor, history.messages)
        await self._send_recovery(cursor, None if fresh else True)

    def _track(self, group: str, epoch: str, offset: int) -> _Cursor:
        old = self._cursors.get(group)
        if old is not None:
            self._by_epoch.pop(old.epoch, None)
        cursor = self._cursors[group] = _Cursor(group, epoch, offset)
        self._by_epoch[epoch] = cursor
        self._foreign_epochs.discard(epoch)
        return cursor

    async def _replay(self, cursor: _Cursor, messages: list[tuple[int, dict[str, Any]]]) -> None:
        for offset, message in messages:
            if offset > cursor.offset:
                delivered = {**message, POSITION_KEY: [cursor.epoch, offset]}
                await self._deliver(cursor, offset, delivered)

    async def _deliver(self, cursor: _Cursor, offset: int, message: Message) -> None:
        self._stamp = [cursor.epoch, offset]
        try:
            await super().dispatch(message)
        finally:
            self._stamp = None
        cursor.offset = offset

    async def dispatch(self, message: Message) -> None:
        position = Position.from_message(message) if self._cursors else None
        if position is None:
            await super().dispatch(message)
            return
        cursor = self._by_epoch.get(position.epoch) or await self._cursor_of_new_epoch(position)
        if cursor is None:
            await super().dispatch(message)
        elif position.offset > cursor.offset:
            if position.offset > cursor.offset + 1:
                await self._fill_gap(cursor, position.offset - 1)
            await self._deliver(cursor, position.offset, message)

    async def _fill_gap(self, cursor: _Cursor, until: int) -> None:
        since = Position(cursor.epoch, cursor.offset)
        history = await self._layer().group_history(
            cursor.group, since=since, limit=until - cursor.offset
        )
        if history.recovered:
            await self._replay(cursor, history.messages)
        if cursor.offset < until:  # the history no longer holds it: tell the client
            cursor.offset = until
            await self._send_recovery(cursor, False)

    async def _cursor_of_new_epoch(self, position: Position) -> _Cursor | None:
        """The cursor whose group restarted its history in ``position.epoch`` (None when the
        epoch belongs to a group not joined with recovery)."""
        if position.epoch in self._foreign_epochs:
            return None
        layer = self._layer()
        for group in list(self._cursors):
            current = await layer.group_history(group, limit=0)
            if current.epoch == position.epoch:
                cursor = self._track(group, current.epoch, 0)
                await self._send_recovery(cursor, False)
                return cursor
        self._foreign_epochs.add(position.epoch)
        return None

    async def _send_recovery(self, cursor: _Cursor, recovered: bool | None) -> None:
        frame = {"group": cursor.group, "epoch": cursor.epoch, "offset": cursor.offset}
        frame["recovered"] = recovered
        await super().send_json({RECOVERY_KEY: frame})

    # -- presence and leaving -----------------------------------------------------------------

    async def _forward_presence_event(self, kind: str, event: Message) -> None:
        if not self.forward_presence:
            return
        await self._send_presence(
            event.get("group"), kind, channel=event["channel"], info=event["info"]
        )

    async def _send_presence(self, group: str | None, kind: str, **fields: Any) -> None:
        await super().send_json({PRESENCE_KEY: {"group": group, "event": kind, **fields}})

    async def _leave_groups(self) -> None:
        await super()._leave_groups()
        if self._joined:
            layer = self._layer()
            for group in self._joined:
                await layer.group_discard(group, self.channel_name)
            self._joined.clear()

    def _layer(self) -> BaseChannelLayer:
        return self._group_layer()
