"""``ModelBinding``: the data binding for modern consumers, sending through the channel layer.

Each outbound change becomes one ``group_send`` per group of
``{"type": "binding.outbound", "stream": stream, "payload": payload, "frame": text}`` on the
layer named by ``channel_layer_alias`` (``frame``: the client's frame, encoded once here rather
than once per receiving socket); :class:`headrace.binding.BindingConsumer` turns it into the frame
``{"stream", "payload"}``. The sends run after the commit (see :mod:`headrace.binding.base`),
all the groups of one change in one hop to the event loop (``async_to_sync``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from django.core.serializers.json import DjangoJSONEncoder

from headrace.binding.base import Binding, Outbound
from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.layers import get_channel_layer

__all__ = ["OUTBOUND_TYPE", "ModelBinding"]

OUTBOUND_TYPE = "binding.outbound"


class ModelBinding(Binding):
    """Declare ``model``, ``stream``, ``fields`` or ``exclude``, ``group_names`` and
    ``has_permission``; see :mod:`headrace.binding.base`."""

    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER

    def deserialize(self, payload: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(action, pk, data)`` from an inbound payload (override for other shapes)."""
        return self.deserialize_payload(payload)

    def send_messages(self, messages: Outbound) -> None:
        async_to_sync(self.group_send_all)(messages)

    async def group_send_all(self, messages: Outbound) -> None:
        """One ``group_send`` per ``(group, payload)``."""
        layer = get_channel_layer(self.channel_layer_alias)
        if layer is None:
            raise ValueError(
                f"{type(self).__name__}: no channel layer {self.channel_layer_alias!r} "
                "is configured (CHANNEL_LAYERS)"
            )
        frames: dict[int, str] = {}  # one encoding per payload, shared by its groups
        for group, payload in messages:
            frame = frames.get(id(payload))
            if frame is None:
                frame = frames[id(payload)] = self.encode_frame(payload)
            message = {"type": OUTBOUND_TYPE, "stream": self.stream, "payload": payload}
            await layer.group_send(group, {**message, "frame": frame})

    def encode_frame(self, payload: dict[str, Any]) -> str:
        """The text frame ``{"stream", "payload"}`` a directly connected socket receives."""
        text: str = DjangoJSONEncoder().encode({"stream": self.stream, "payload": payload})
        return text
