"""The tests/live Django project as child processes: migrate, serve, run workers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import require_service
from tests.django.processes import REPO, ServerProcess
from tests.live._server import serve_app

SETTINGS = "tests.live.site.settings"


PG = ("127.0.0.1", 5432)
PG_ADMIN = f"host={PG[0]} port={PG[1]} user=postgres dbname=test"


def create_pg_database() -> str:
    """A new, uniquely named PostgreSQL database (created from the ``test`` database)."""
    require_service("PostgreSQL", *PG)
    import psycopg

    name = "headrace_live_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Site:
    """Environment of one isolated copy of the project (its own database and layer prefix).

    ``database`` is ``"sqlite"`` (a file under ``tmp``) or ``"postgresql"`` (a database created
    for this site on the local PostgreSQL; :meth:`close` drops it)."""

    def __init__(self, tmp: Path, layer: str = "redis", database: str = "sqlite") -> None:
        if layer == "redis":
            require_service("Redis", "127.0.0.1", 6379)
        self.layer = layer
        self.database = database
        self.db = tmp / "live.sqlite3"
        self.prefix = "live" + uuid.uuid4().hex[:10]
        self.env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "LIVE_DB": str(self.db),
            "LIVE_PREFIX": self.prefix,
            "LIVE_LAYER": layer,
            "LIVE_STATIC_ROOT": str(tmp / "static"),
        }
        self.pg_name: str | None = None
        if database == "postgresql":
            self.pg_name = create_pg_database()
            self.env["LIVE_PG_DB"] = self.pg_name
        elif database != "sqlite":
            raise ValueError(f"database must be 'sqlite' or 'postgresql', not {database!r}")
        self.server: ServerProcess | None = None

    def close(self) -> None:
        """Drop the site's PostgreSQL database, if it has one."""
        if self.pg_name is not None:
            drop_pg_database(self.pg_name)
            self.pg_name = None

    def manage(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=REPO,
            env={**_base_env(), **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--run-syncdb", "--verbosity", "0")

    def serve(self) -> ServerProcess:
        self.server = serve_app("tests.live.site.asgi:application", env=self.env)
        return self.server

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                f"http://127.0.0.1:{self.port}{path}", content=json.dumps(body)
            )

    async def cards(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{self.port}/cards/")
        response.raise_for_status()
        cards: list[dict[str, Any]] = response.json()["cards"]
        return cards


def _base_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@contextmanager
def served_site(tmp: Path, layer: str = "redis", database: str = "sqlite") -> Iterator[Site]:
    site = Site(tmp, layer, database)
    try:
        site.migrate()
        site.serve()
        yield site
    finally:
        if site.server is not None:
            site.server.stop()
        site.close()
