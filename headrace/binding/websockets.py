"""The Channels 1.x binding classes: ``WebsocketBinding`` and ``WebsocketBindingWithMembers``.

Same core as the modern binding (:mod:`headrace.binding.base`: the group diff, the payload,
the inbound checks, sending after the commit); what differs is the 1.x surface:

* outbound, each group gets ``Group(name).send({"text": <frame JSON>})`` through the 1.x layer
  view (:mod:`headrace.channel`), the frame encoded with ``DjangoJSONEncoder``; inside a 1.x
  consumer that send is held until the consumer returns, as 1.x sends are;
* inbound, ``Binding.consumer`` is a 1.x consumer ``consumer(message, **kwargs)`` for the 1.x
  demultiplexer, which puts the JSON of the frame's payload in ``message["text"]`` and passes
  ``multiplexer=``; anything but a ``websocket.receive`` message is ignored; the user is
  ``message.user`` when a session decorator set it, else ``AnonymousUser``;
* nothing is sent back to the client (no acknowledgement, as in 1.x); refused or failed
  actions are logged (1.x raised ``ValueError("Bad action")`` inside the consumer).
"""

from __future__ import annotations

import json
import logging
from operator import attrgetter
from typing import Any, ClassVar

from django.core.serializers.json import DjangoJSONEncoder

from headrace.binding.base import Binding, Outbound
from headrace.channel import Group

__all__ = ["WebsocketBinding", "WebsocketBindingWithMembers"]

logger = logging.getLogger("headrace.binding")


class WebsocketBinding(Binding):
    """A 1.x binding whose outbound messages are WebSocket text frames for 1.x groups."""

    channel_session_user: ClassVar[bool] = True
    channel_session: ClassVar[bool] = False
    strict_ordering: ClassVar[bool] = False

    message: Any = None
    kwargs: dict[str, Any]

    # ------------------------------------------------------------------ outbound

    @classmethod
    def encode(cls, stream: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The 1.x reply-channel message carrying ``{"stream", "payload"}``."""
        frame = {"stream": stream, "payload": payload}
        return {"text": json.dumps(frame, cls=DjangoJSONEncoder)}

    def send_messages(self, messages: Outbound) -> None:
        for group, payload in messages:
            Group(group).send(self.encode(str(self.stream), payload))

    # ------------------------------------------------------------------ inbound

    @classmethod
    def consumer(cls, message: Any, **kwargs: Any) -> None:
        """The 1.x consumer the demultiplexer maps this binding's stream to."""
        cls.trigger_inbound(message, **kwargs)

    @classmethod
    def trigger_inbound(cls, message: Any, **kwargs: Any) -> None:
        """Apply one demultiplexed ``websocket.receive`` message (others are ignored)."""
        if message.channel.name != "websocket.receive":
            return
        binding = cls()
        binding.message = message
        binding.kwargs = kwargs
        try:
            action, pk, data = binding.deserialize(message)
        except (ValueError, TypeError, KeyError) as error:
            logger.warning("%s: unreadable inbound message: %s", cls.__name__, error)
            return
        pk, errors = binding.apply_inbound(binding.user(), action, pk, data)
        if errors:
            logger.warning("%s: inbound %r on pk %r refused: %s", cls.__name__, action, pk, errors)

    def deserialize(self, message: Any) -> tuple[Any, Any, Any]:
        """``(action, pk, data)`` from the payload JSON in ``message["text"]``."""
        content = json.loads(message["text"])
        if not isinstance(content, dict):
            raise ValueError("the payload is not an object")
        return self.deserialize_payload(content)

    def user(self) -> Any:
        user = getattr(self.message, "user", None)
        if user is not None:
            return user
        from django.contrib.auth.models import AnonymousUser

        return AnonymousUser()


class WebsocketBindingWithMembers(WebsocketBinding):
    """Adds ``send_members`` (attributes, ``rel.attr`` paths, methods) to the outbound data;
    dots become ``__`` in the keys and callables are called."""

    send_members: ClassVar[list[str]] = []

    def serialize_data(self, instance: Any, data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        for member in self.send_members:
            value = attrgetter(member)(instance)
            data[member.replace(".", "__")] = value() if callable(value) else value
        return data
