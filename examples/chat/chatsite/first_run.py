"""First run on a fresh machine: create the SQLite tables when the server starts.

``FirstRunMigrations`` wraps the ASGI application and answers the ASGI lifespan protocol:
at server start-up (before the server accepts connections) it applies pending migrations
when ``AUTO_MIGRATE`` is on (the default, see settings), so ``headrace
chatsite.asgi:application`` and ``python manage.py runserver`` work from a fresh checkout.
It runs at start-up rather than at import so that management commands that merely import
the application (``check``, ``makemigrations``) never migrate. Turn it off with
``CHAT_AUTO_MIGRATE=0`` and run ``python manage.py migrate`` yourself when several
processes share one database, or with a server that does not speak lifespan.
"""

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def migrate_if_needed() -> None:
    if not settings.AUTO_MIGRATE:
        return
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        call_command("migrate", interactive=False, verbosity=0)
    connection.close()


class FirstRunMigrations:
    """ASGI wrapper: migrate on lifespan start-up, pass every other scope through."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.inner(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await sync_to_async(migrate_if_needed)()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
