"""The chat consumer: one per WebSocket, joined to its room's group.

Everyone may listen; only logged-in users may post. A post is saved as a ``ChatMessage``
and then sent to the room's group, so every socket in the room (in any server process,
with the Redis layer) receives ``{"message": ..., "user": ...}``.
"""

import json
from typing import Any

from chat.models import ChatMessage
from headrace.db import database_sync_to_async
from headrace.generic.websocket import AsyncWebsocketConsumer

MAX_MESSAGE_LENGTH = 2000


@database_sync_to_async
def save_message(room: str, user: Any, text: str) -> ChatMessage:
    return ChatMessage.objects.create(room=room, user=user, text=text)


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.send_json_text({"error": "Log in to post messages."})
            return
        text = self.parse_message(text_data)
        if text is None:
            await self.send_json_text({"error": 'Send {"message": "..."} as text.'})
            return
        await save_message(self.room_name, user, text)
        await self.channel_layer.group_send(
            self.room_group_name,
            {"type": "chat.message", "message": text, "user": user.get_username()},
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json_text({"message": event["message"], "user": event["user"]})

    async def send_json_text(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(payload))

    @staticmethod
    def parse_message(text_data: str | None) -> str | None:
        try:
            message = json.loads(text_data or "")["message"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(message, str) or not message.strip():
            return None
        return message.strip()[:MAX_MESSAGE_LENGTH]
