"""One persisted chat line: who said what, in which room, when."""

import re

from django.conf import settings
from django.db import models

ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
"""Valid room names: ASCII letters, digits, ``-`` and ``_`` (group names must be ASCII)."""


class ChatMessage(models.Model):
    room = models.CharField(max_length=80, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["time", "id"]

    def __str__(self) -> str:
        return f"[{self.room}] {self.user}: {self.text[:40]}"

    @classmethod
    def recent(cls, room: str, limit: int = 50) -> list["ChatMessage"]:
        """The last ``limit`` messages of ``room``, oldest first."""
        latest = cls.objects.filter(room=room).select_related("user").order_by("-time", "-id")
        return list(reversed(latest[:limit]))
