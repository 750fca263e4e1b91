from django.db import models


class ChatMessage(models.Model):
    """A message of a room (the manual's Models section)."""

    room = models.CharField(max_length=100, db_index=True)
    message = models.TextField()
    user = models.CharField(max_length=150, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "pk"]

    def __str__(self) -> str:
        return f"{self.room}: {self.message}"
