"""database_sync_to_async and aclose_old_connections with a real SQLite database."""

from __future__ import annotations

import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection

from headrace.db import DatabaseSyncToAsync, aclose_old_connections, database_sync_to_async
from headrace.generic.websocket import AsyncWebsocketConsumer
from headrace.testing import WebsocketCommunicator


@database_sync_to_async
def count_users() -> int:
    from django.contrib.auth import get_user_model

    return int(get_user_model().objects.count())


async def test_decorated_function_queries_off_the_loop(user_factory: Any) -> None:
    before = await count_users()
    await database_sync_to_async(user_factory)("db-user")
    assert await count_users() == before + 1
    assert isinstance(count_users, DatabaseSyncToAsync)


async def test_runs_outside_the_event_loop_thread() -> None:
    def thread_name() -> str:
        return threading.current_thread().name

    assert await database_sync_to_async(thread_name)() != threading.current_thread().name


def expire_connection() -> None:
    """Open the thread's connection and mark it past CONN_MAX_AGE."""
    connection.ensure_connection()
    connection.close_at = 0


def connection_is_closed() -> bool:
    return connection.connection is None


async def test_expired_connection_is_closed_before_the_call(migrated_database: None) -> None:
    await sync_to_async(expire_connection)()
    assert await database_sync_to_async(connection_is_closed)() is True


async def test_expired_connection_is_closed_after_the_call(migrated_database: None) -> None:
    await database_sync_to_async(expire_connection)()
    assert await sync_to_async(connection_is_closed)() is True


async def test_aclose_old_connections_closes_expired(migrated_database: None) -> None:
    await sync_to_async(expire_connection)()
    assert await sync_to_async(connection_is_closed)() is False
    await aclose_old_connections()
    assert await sync_to_async(connection_is_closed)() is True


class ConnectionProbe(AsyncWebsocketConsumer):
    """Reports whether a database_sync_to_async call found the connection closed."""

    async def connect(self) -> None:
        await self.accept()
        closed = await database_sync_to_async(connection_is_closed)()
        await self.send(text_data=str(closed))


async def test_communicators_switch_the_clean_up_off_in_the_database_thread(
    migrated_database: None,
) -> None:
    # A TestCase's transaction must survive a consumer's ORM call under a communicator: the
    # context switch set by the communicator reaches the thread the function runs in.
    await sync_to_async(expire_connection)()
    communicator = WebsocketCommunicator(ConnectionProbe.as_asgi(), "/")
    assert (await communicator.connect(timeout=5))[0]
    assert await communicator.receive_from(timeout=5) == "False"
    await communicator.disconnect(timeout=5)
    await aclose_old_connections()
    assert await sync_to_async(connection_is_closed)() is True
