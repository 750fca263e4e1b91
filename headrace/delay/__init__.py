"""The delay server: messages sent to the ``asgi.delay`` channel are delivered later.

Add ``"headrace.delay"`` to ``INSTALLED_APPS``, run ``manage.py migrate`` and
``manage.py rundelay [--layer ALIAS] [--sleep SECONDS]``. A message
``{"channel": <destination>, "content": <message dict>, "delay": <milliseconds>}`` sent to
``asgi.delay`` is stored in the database (:class:`headrace.delay.models.DelayedMessage`) and
sent to ``channel`` once ``delay`` ms have passed; see :mod:`headrace.delay.server`.

From a modern consumer::

    from headrace.delay import send_later
    await send_later("reminders", {"type": "reminder.due", "id": 7}, delay_ms=60_000)

From Channels 1.x code: ``Channel("asgi.delay").send({...}, immediately=True)``.
"""

from __future__ import annotations

from typing import Any

from headrace.constants import DEFAULT_CHANNEL_LAYER
from headrace.layers import BaseChannelLayer, get_channel_layer

__all__ = ["DELAY_CHANNEL", "send_later"]

DELAY_CHANNEL = "asgi.delay"


async def send_later(
    channel: str,
    message: dict[str, Any],
    delay_ms: int,
    *,
    channel_layer: BaseChannelLayer | str = DEFAULT_CHANNEL_LAYER,
) -> None:
    """Have the delay server send ``message`` to ``channel`` in ``delay_ms`` milliseconds.

    ``channel_layer`` is a layer or the alias of one (``"default"``); the delay server must
    run on the same layer. Raises ``TypeError``/``ValueError`` for a bad argument at once,
    rather than letting the delay server log it later."""
    if not isinstance(message, dict):
        raise TypeError(f"message must be a dict, not {type(message).__name__}")
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or delay_ms < 0:
        raise ValueError(f"delay_ms must be a non-negative int of milliseconds, not {delay_ms!r}")
    layer = _layer(channel_layer)
    layer.require_valid_channel_name(channel)
    await layer.send(DELAY_CHANNEL, {"channel": channel, "content": message, "delay": delay_ms})


def _layer(channel_layer: BaseChannelLayer | str) -> BaseChannelLayer:
    if isinstance(channel_layer, BaseChannelLayer):
        return channel_layer
    layer = get_channel_layer(channel_layer)
    if layer is None:
        raise ValueError(f"no channel layer {channel_layer!r} is configured (CHANNEL_LAYERS)")
    return layer
