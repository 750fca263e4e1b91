"""The chat example in two headrace processes sharing the Redis layer (CHAT_REDIS_URL)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets

from headrace.layers.redis import RedisChannelLayer
from tests.conftest import require_service
from tests.django.chat_site import create_users, start_chat_server
from tests.django.test_chat_example import log_in, next_json

HEADRACE = ["-m", "headrace", "-b", "127.0.0.1", "-p", "{port}", "chatsite.asgi:application"]


async def test_message_crosses_processes(tmp_path: Path) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    db_path = tmp_path / "chat.sqlite3"
    redis = {"CHAT_REDIS_URL": "redis://127.0.0.1:6379/3"}
    first = start_chat_server(db_path, HEADRACE, extra_env=redis)
    try:
        second = start_chat_server(db_path, HEADRACE, extra_env=redis)
        try:
            await asyncio.to_thread(create_users, db_path)
            base_one = f"http://127.0.0.1:{first.port}"
            base_two = f"http://127.0.0.1:{second.port}"
            session = await asyncio.to_thread(log_in, base_one, "alice")
            room = f"redis-{first.port}"
            async with (
                websockets.connect(
                    f"ws://127.0.0.1:{second.port}/ws/chat/{room}/",
                    origin=base_two,  # type: ignore[arg-type]
                ) as listener,
                websockets.connect(
                    f"ws://127.0.0.1:{first.port}/ws/chat/{room}/",
                    origin=base_one,  # type: ignore[arg-type]
                    additional_headers={"Cookie": f"sessionid={session}"},
                ) as poster,
            ):
                await poster.send(json.dumps({"message": "across processes"}))
                positioned = "history" in RedisChannelLayer.extensions
                received = await next_json(listener, positioned=positioned)
            assert received == {"message": "across processes", "user": "alice"}
        finally:
            second.stop()
    finally:
        first.stop()
