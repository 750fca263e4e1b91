"""The Channels-1 example project as it is deployed: ``headrace ...asgi:channel_layer`` (the
interface server) and ``manage.py runworker`` processes over IPC or Redis, with a private
SQLite file and channel-session folder per site."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from headrace.asgi import AsgiChannelLayer
from tests.conftest import free_port, terminate

REPO = Path(__file__).resolve().parents[3]
SETTINGS = "examples.channels1.project.settings"
WAIT = 30.0


class Child:
    """A subprocess with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the output of {self.argv}:\n{self.log()}")

    def stop(self) -> int | None:
        return terminate(self.process, WAIT)


class ExampleSite:
    """One deployment of the example: its layer, database, server and workers."""

    def __init__(
        self, kind: str, routing: str = "tests.channels1.api.process_routing.channel_routing"
    ) -> None:
        self.kind = kind
        self.prefix = f"c1ex-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder = Path(tempfile.mkdtemp(prefix="hr-c1ex-"))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "EXAMPLE_LAYER": f"{kind}:{self.prefix}",
            "EXAMPLE_DB": str(self.folder / "db.sqlite3"),
            "EXAMPLE_CHANNEL_SESSIONS": str(self.folder / "channel-sessions"),
            "EXAMPLE_ROUTING": routing,
            "EXAMPLE_DEBUG": "0",
        }
        self.children: list[Child] = []
        self.view = AsgiChannelLayer(self._backend())
        # The test process holds the IPC hub, so a stopped worker takes no queue along.
        self.view.new_channel("warmup!")
        self.manage("migrate", "--noinput", "-v", "0")
        self.port = 0

    def _backend(self) -> Any:
        if self.kind == "ipc":
            from headrace.layers.ipc import IPCChannelLayer

            return IPCChannelLayer(prefix=self.prefix)
        from headrace.layers.redis import RedisChannelLayer

        return RedisChannelLayer(hosts=[("127.0.0.1", 6379)], prefix=self.prefix)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=REPO,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout + result.stderr

    def create_user(self, username: str, password: str) -> None:
        code = (
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={password!r})"
        )
        self.manage("shell", "-c", code)

    def _child(self, argv: list[str], name: str) -> Child:
        child = Child(argv, self.env, self.folder / f"{name}-{len(self.children)}.log")
        self.children.append(child)
        return child

    def start_server(self) -> Child:
        self.port = free_port()
        target = "examples.channels1.project.asgi:channel_layer"
        argv = [sys.executable, "-m", "headrace", "-b", "127.0.0.1", "-p", str(self.port), target]
        server = self._child(argv, "server")
        deadline = time.monotonic() + WAIT
        import socket

        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(f"the interface server exited:\n{server.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return server
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the interface server did not listen:\n{server.log()}")

    def start_worker(self, *args: str) -> Child:
        worker = self._child([sys.executable, "-m", "django", "runworker", *args], "worker")
        worker.wait_for("Listening on")
        return worker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return "\n".join(f"--- {' '.join(c.argv)}\n{c.log()}" for c in self.children)

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.view.close()
        if self.kind == "redis":
            import redis

            client = redis.Redis(host="127.0.0.1", port=6379)
            try:
                keys = list(client.scan_iter(match=f"*{self.prefix}*"))
                if keys:
                    client.unlink(*keys)
            finally:
                client.close()
        shutil.rmtree(self.folder, ignore_errors=True)
