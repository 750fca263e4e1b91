"""The chat consumer: one per WebSocket, joined to its room's group.

Everyone may listen; only logged-in users may post. A post is saved as a ``ChatMessage``
and then sent to the room's group, so every socket in the room (in any server process,
with the Redis layer) receives ``{"message": ..., "user": ..., "id": ...}``.

The room's group keeps a history and knows who is there (``CHANNEL_LAYERS`` in the
settings): a browser that lost its socket reconnects with the position of the last message it
saw and gets exactly the messages it missed (the page's WebSocketBridge does this), and every
page shows who is online (presence: a member list when joining, then joins and leaves).
"""

from typing import Any

from chat.models import ChatMessage
from headrace.db import database_sync_to_async
from headrace.generic.recovery import RecoveringJsonWebsocketConsumer

MAX_MESSAGE_LENGTH = 2000


def room_group(room_name: str) -> str:
    return f"chat.{room_name}"


@database_sync_to_async
def save_message(room: str, user: Any, text: str) -> ChatMessage:
    return ChatMessage.objects.create(room=room, user=user, text=text)


class ChatConsumer(RecoveringJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = room_group(self.room_name)
        extensions = self.channel_layer.extensions
        self.forward_presence = "presence" in extensions
        user = self.scope["user"]
        info = {"user": user.get_username() if user.is_authenticated else None}
        await self.join_group(
            self.room_group_name,
            info=info if self.forward_presence else None,
            recover="history" in extensions,
        )
        await self.accept()  # the join's frames (who is online, missed messages) follow

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:  # a binary frame
            await self.send_json({"error": 'Send {"message": "..."} as text.'})
            return
        await super().receive(text_data=text_data)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.send_json({"error": "Log in to post messages."})
            return
        text = self.parse_message(content)
        if text is None:
            await self.send_json({"error": 'Send {"message": "..."} as text.'})
            return
        saved = await save_message(self.room_name, user, text)
        await self.channel_layer.group_send(
            self.room_group_name,
            {"type": "chat.message", "message": text, "user": user.get_username(), "id": saved.pk},
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"message": event["message"], "user": event["user"], "id": event["id"]}
        )

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    @staticmethod
    def parse_message(content: Any) -> str | None:
        message = content.get("message") if isinstance(content, dict) else None
        if not isinstance(message, str) or not message.strip():
            return None
        return message.strip()[:MAX_MESSAGE_LENGTH]
