"""The stored delayed message: where it goes, when, and what (JSON text)."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.db import models

__all__ = ["DelayedMessage", "decode_content", "encode_content"]

_BYTES = "__headrace_bytes__"


def _encode_bytes(value: object) -> dict[str, str]:
    if isinstance(value, bytes | bytearray):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"a {type(value).__name__} cannot be stored in a delayed message")


def _decode_bytes(value: dict[str, Any]) -> Any:
    if len(value) == 1 and _BYTES in value:
        return base64.b64decode(value[_BYTES])
    return value


def encode_content(content: dict[str, Any]) -> str:
    """JSON text of a message; ``bytes`` values survive (tagged base64)."""
    return json.dumps(content, default=_encode_bytes)


def decode_content(text: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(text, object_hook=_decode_bytes)
    return content


class DelayedMessage(models.Model):  # type: ignore[misc, unused-ignore]
    """One message waiting for its ``due_date``."""

    due_date = models.DateTimeField(db_index=True)
    channel_name = models.CharField(max_length=512)
    content = models.TextField()

    class Meta:
        app_label = "headrace_delay"
        ordering = ["due_date", "id"]

    def __str__(self) -> str:
        return f"{self.channel_name} at {self.due_date.isoformat()}"
