"""``BindingConsumer``: a JSON WebSocket consumer that carries its bindings both ways.

Theory of operation
-------------------
The consumer joins ``groups`` as usual (the groups your bindings' ``group_names`` return).
Outbound, each ``binding.outbound`` layer message whose stream is one of its ``bindings`` is
sent to the socket: directly on a socket as the ``frame`` text the binding encoded once for
every receiver, and without the per-message stale-database-connection cleanup (forwarding
uses no database; that cleanup is a hop to the one sync thread, and with a thousand sockets
watching a model it was most of the cost of a save).

Inbound, a frame for one of its bindings' streams is deserialised by that binding and
applied with :meth:`~headrace.binding.base.Binding.apply_inbound` in a worker thread
(``database_sync_to_async``), as ``scope["user"]`` (``AnonymousUser`` when there is no auth
middleware). A payload with a ``request_id`` is answered on the same stream with
``{"request_id", "action", "pk", "errors": [...]}`` (``pk`` is the new row's on create);
without one, a refused action is logged.

*Directly on a socket* frames are ``{"stream", "payload"}``, and a bad frame closes the socket
with the codes of :mod:`headrace.generic.multiplexer`. *As an application of the
demultiplexer* (``scope["stream"]`` is set) frames are bare payloads; the demultiplexer adds
the stream. Then the bindings served are the ones whose ``stream`` is the mounted stream name;
mounting it under a name none of them uses is a configuration error, raised on connect.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, ClassVar

from django.core.serializers.json import DjangoJSONEncoder

from headrace._types import Message
from headrace.binding.model_binding import OUTBOUND_TYPE, ModelBinding
from headrace.db import database_sync_to_async
from headrace.generic.multiplexer import StreamError, read_stream_frame, refuse_frame
from headrace.generic.websocket import AsyncJsonWebsocketConsumer

__all__ = ["BindingConsumer"]

logger = logging.getLogger("headrace.binding")


class BindingConsumer(AsyncJsonWebsocketConsumer):
    """``bindings = [ItemBinding, ...]``; ``groups`` as on any consumer."""

    bindings: ClassVar[list[type[ModelBinding]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: dict[str, type[ModelBinding]] = {}

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.streams = self._served_streams()
        await super().websocket_connect(message)

    def _served_streams(self) -> dict[str, type[ModelBinding]]:
        if not self.bindings:
            raise ValueError(f"{type(self).__name__}.bindings is empty")
        served = {str(binding.stream): binding for binding in self.bindings}
        mounted = self.scope.get("stream")
        if mounted is None:
            return served
        if mounted not in served:
            raise ValueError(
                f"{type(self).__name__} is mounted as stream {mounted!r}, but none of its "
                f"bindings uses that stream (they use {sorted(served)})"
            )
        return {mounted: served[mounted]}

    @property
    def demultiplexed(self) -> bool:
        return "stream" in self.scope

    # ------------------------------------------------------------------ inbound

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if self.demultiplexed:
            assert text_data is not None  # the demultiplexer sends JSON objects only
            stream, payload = self.scope["stream"], await self.decode_json(text_data)
        else:
            try:
                stream, payload = await read_stream_frame(self, text_data, self.streams)
            except StreamError as error:
                await refuse_frame(self, error)
                return
        await self.apply_payload(stream, payload)

    async def apply_payload(self, stream: str, payload: dict[str, Any]) -> None:
        """Apply one inbound payload with the binding of ``stream``; acknowledge it."""
        binding = self.streams[stream]()
        action, pk, data = binding.deserialize(payload)
        user = self.scope.get("user")  # maybe a lazy object: only touched in the thread
        apply = partial(binding.apply_inbound, _user_or_anonymous(user), action, pk, data)
        pk, errors = await database_sync_to_async(apply)()
        if "request_id" in payload:
            answer = {"request_id": payload["request_id"], "action": action, "pk": pk}
            await self.send_frame(stream, {**answer, "errors": errors})
        elif errors:
            logger.warning("inbound %r on stream %r refused: %s", action, stream, errors)

    # ------------------------------------------------------------------ outbound

    async def dispatch(self, message: Message) -> None:
        if message.get("type") == OUTBOUND_TYPE:
            # Forwarding touches no database: skip the per-message stale-connection cleanup
            # (a thread hop, shared by every consumer of the process) that dispatch() does.
            await self.binding_outbound(dict(message))
        else:
            await super().dispatch(message)

    async def binding_outbound(self, event: dict[str, Any]) -> None:
        stream = event.get("stream")
        if stream not in self.streams:
            return
        frame = event.get("frame")
        if frame is not None and not self.demultiplexed:
            await self.send(text_data=frame)  # encoded once by the sender, for every socket
        else:
            await self.send_frame(stream, event["payload"])

    async def send_frame(self, stream: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` on ``stream`` (bare when the demultiplexer wraps it)."""
        if self.demultiplexed:
            await self.send_json(payload)
        else:
            await self.send_json({"stream": stream, "payload": payload})

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        text: str = DjangoJSONEncoder().encode(content)
        return text


def _user_or_anonymous(user: Any) -> Any:
    """``scope["user"]`` as is (a lazy user is resolved in the worker thread, by the binding),
    or ``AnonymousUser`` when no auth middleware set one."""
    if user is not None:
        return user
    from django.contrib.auth.models import AnonymousUser

    return AnonymousUser()
