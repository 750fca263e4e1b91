"""A throwaway RabbitMQ node for restart, failover and TLS tests (never the machine's broker).

The node runs as the ``rabbitmq`` user (``rabbitmq-server`` switches to it when started by
root), so its directory lives under the temporary directory with mode 0755, owned by that
user, and has its own config file (the system one pins port 5672). ``stop()`` kills it by the
PID it wrote; ``start()`` again reuses the same data directory, so durable queues, exchanges
and bindings survive a restart, as on a real broker.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.conftest import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class ThrowawayBroker:
    """One private RabbitMQ node on free loopback ports."""

    def __init__(self, tls_files: tuple[str, str, str] | None = None) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.tls_port = free_port() if tls_files else None
        self.tls_files = tls_files
        self.directory = Path(tempfile.mkdtemp(prefix="headrace-rmq-"))
        self.name = f"hr{os.getpid()}{self.port}@localhost"
        self.pid: int | None = None
        self._prepare()

    @staticmethod
    def available() -> bool:
        if shutil.which("rabbitmq-server") is None:
            return False
        try:
            pwd.getpwnam("rabbitmq")
        except KeyError:
            return False
        return os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def tls_url(self) -> str:
        return f"amqps://guest:guest@localhost:{self.tls_port}/"

    def _prepare(self) -> None:
        directory = self.directory
        directory.chmod(0o755)
        (directory / "plugins").write_text("[].\n")
        lines = [
            f"listeners.tcp.local = 127.0.0.1:{self.port}",
            "loopback_users = none",
        ]
        if self.tls_files is not None:
            ca, cert, key = self._copy_tls_files()
            lines += [
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
                f"ssl_options.cacertfile = {ca}",
                f"ssl_options.certfile = {cert}",
                f"ssl_options.keyfile = {key}",
                "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false",
            ]
        (directory / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        account = pwd.getpwnam("rabbitmq")
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid)

    def _copy_tls_files(self) -> tuple[Path, Path, Path]:
        assert self.tls_files is not None
        copies = []
        for source, name in zip(self.tls_files, ("ca.pem", "cert.pem", "key.pem"), strict=True):
            target = self.directory / name
            shutil.copyfile(source, target)
            target.chmod(0o644)
            copies.append(target)
        return copies[0], copies[1], copies[2]

    def _environment(self) -> dict[str, str]:
        d = self.directory
        environment = dict(os.environ)
        environment.update(
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_PID_FILE=str(d / "pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "plugins"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(d / "ff"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "expand"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
        )
        return environment

    def start(self) -> ThrowawayBroker:
        pid_file = self.directory / "pid"
        pid_file.unlink(missing_ok=True)
        with open(self.directory / "out.log", "ab") as log:
            subprocess.Popen(
                ["rabbitmq-server"],
                cwd=self.directory,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while time.monotonic() < deadline:
            if pid_file.exists() and all(_accepts(port) for port in ports):
                self.pid = int(pid_file.read_text().strip())
                return self
            time.sleep(0.2)
        self.stop()
        log_text = (self.directory / "out.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"throwaway RabbitMQ did not start in {START_TIMEOUT} s:\n{log_text}")

    def stop(self) -> None:
        """Kill the node (SIGKILL: an abrupt broker death) and wait until it is gone."""
        pid, self.pid = self.pid, None
        if pid is None:
            pid_file = self.directory / "pid"
            if not pid_file.exists():
                return
            pid = int(pid_file.read_text().strip() or 0)
            if not pid:
                return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        while time.monotonic() < deadline and _accepts(self.port):
            time.sleep(0.1)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
