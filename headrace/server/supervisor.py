"""``--workers N`` and ``--reload``: a supervisor process and its worker processes.

Theory of operation
-------------------
The supervisor binds every listener once (``-b/-p``, ``-u``, ``--fd``, ``-e``: the same
:func:`~headrace.server.endpoints.bind_listeners` as a single process) and never imports the
application. Each worker is a fresh interpreter (``python -m headrace.server.supervisor
--worker``) that inherits the listening sockets (``pass_fds``) and a readiness pipe, reads its
:class:`WorkerSpec` (pickled) from stdin, imports the application and serves the inherited
sockets with :func:`headrace.server.server.run`. All workers accept from the same kernel queues,
so a connection waiting in a backlog is taken by whichever worker is accepting: while the
supervisor lives and keeps the sockets open, no connection is refused.

Generations. Workers started together form a generation. A reload (``SIGHUP``, or a file change
with ``--reload``) starts a complete new generation and only when every new worker has written
"ready" (its listeners are accepting) are the old ones sent ``SIGTERM``, which they answer with a
graceful drain (stop accepting, finish in-flight requests). If a new worker dies before it is
ready, the reload is abandoned and the old generation keeps serving. ``SIGTTIN``/``SIGTTOU`` add or
retire one worker; a worker that exits on its own (crash, ``--limit-max-requests`` recycling) is
replaced at once, with exponential back-off when workers die while booting; the supervisor gives
up (exit 1) when the first generation never boots, except under ``--reload``, where it waits for
the next change. ``SIGTERM``/``SIGINT`` drain every worker (a second one forces them), ``SIGKILL``
ends stragglers after ``--timeout-graceful-shutdown`` plus a margin.

The main loop is a plain ``selectors`` loop: signals arrive through ``signal.set_wakeup_fd``,
readiness through the workers' pipes, file changes through a pipe written by the reload thread.
Workers live in their own process group (a terminal's Ctrl-C reaches only the supervisor, which
then drains them in order) and shut down by themselves if the supervisor disappears.

The IPC layer's hub. Unless ``--no-ipc-hub``, the supervisor first starts ``python -m
headrace.layers.ipc`` for the default hub path as a companion process (restarted if it dies,
stopped last). Workers using :class:`~headrace.layers.ipc.IPCChannelLayer` with its default
path find it there, so queued messages and groups survive worker crashes, recycling and reloads;
the supervisor itself never imports the layer (nor Django). Layers with another path or prefix
elect a hub among their processes, as they do without a supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headrace.server.config import Config
from headrace.server.endpoints import BindError, Listener, bind_listeners

__all__ = ["Supervisor", "WorkerSpec", "supervise", "worker_main"]

logger = logging.getLogger("headrace.supervisor")

KILL_MARGIN = 5.0
HUB_START_TIMEOUT = 10.0
HUB_ALREADY_RUNNING = 4
MAX_BOOT_FAILURES = 5
MAX_BACKOFF = 10.0
PARENT_CHECK_INTERVAL = 1.0
DRAIN_START_YIELDS = 100
HANDLED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)


@dataclass(frozen=True)
class InheritedListener:
    """A listener as a worker receives it: an inherited fd plus how to serve it."""

    fd: int
    description: str
    tls: Any = None


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, pickled onto its stdin."""

    config: Config
    listeners: tuple[InheritedListener, ...]
    ready_fd: int
    index: int
    parent_pid: int


@dataclass
class Worker:
    """The supervisor's record of one worker process."""

    process: subprocess.Popen[bytes]
    generation: int
    index: int
    ready_pipe: int
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    retiring: bool = False
    kill_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Runs and watches the worker processes for one configuration (see module docs)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.target = config.workers
        self.workers: list[Worker] = []
        self.listeners: list[Listener] = []
        self.generation = 0
        self._generations = itertools.count(1)
        self._indexes = itertools.count()
        self._signals: deque[int] = deque()
        self._selector = selectors.DefaultSelector()
        self._boot_failures = 0
        self._ever_ready = False
        self._next_spawn = 0.0
        self._stopping = False
        self._exit_status = 0
        self._change_read, self._change_write = os.pipe()
        self._wake_read, self._wake_write = socket.socketpair()
        self._watcher: Any = None
        self._hub: subprocess.Popen[bytes] | None = None
        self._hub_restart_at: float | None = None

    # ---------------------------------------------------------------- entry point

    def run(self) -> int:
        try:
            self.listeners = bind_listeners(self.config)
        except BindError as exc:
            sys.stderr.write(f"headrace: {exc}\n")
            return 1
        for listener in self.listeners:
            logger.info("Listening on %s", listener.description)
        self._install_signals()
        self._start_hub()
        self._start_reloader()
        self.generation = next(self._generations)
        logger.info("Supervisor %d starting %d workers", os.getpid(), self.target)
        try:
            while not (self._stopping and not self.workers):
                self._tick()
        finally:
            self._cleanup()
        return self._exit_status

    def _tick(self) -> None:
        for key, _ in self._selector.select(timeout=0.25):
            key.data()
        while self._signals:
            self._on_signal(self._signals.popleft())
        self._reap()
        self._watch_hub()
        self._enforce_deadlines()
        if not self._stopping:
            self._maintain()

    # ---------------------------------------------------------------- signals and pipes

    def _install_signals(self) -> None:
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        signal.set_wakeup_fd(self._wake_write.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record_signal)
        self._selector.register(self._wake_read, selectors.EVENT_READ, self._drain_wakeups)
        self._selector.register(self._change_read, selectors.EVENT_READ, self._on_change_pipe)

    def _record_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass

    def _on_change_pipe(self) -> None:
        os.read(self._change_read, 4096)
        if not self._stopping:
            self.reload("source files changed")

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop(signal.Signals(signum).name)
        elif signum == signal.SIGHUP:
            self.reload("SIGHUP")
        elif signum == signal.SIGTTIN:
            self.target += 1
            logger.info("SIGTTIN: now %d workers", self.target)
        elif signum == signal.SIGTTOU and self.target > 1:
            self.target -= 1
            logger.info("SIGTTOU: now %d workers", self.target)

    def _start_reloader(self) -> None:
        if not self.config.reload:
            return
        from headrace.server.reload import ChangeWatcher, PathFilter

        path_filter = PathFilter(self.config.reload_includes, self.config.reload_excludes)
        dirs = list(self.config.reload_dirs) or [os.getcwd()]
        self._watcher = ChangeWatcher(dirs, path_filter, self._notify_change)
        self._watcher.start()

    def _notify_change(self) -> None:
        os.write(self._change_write, b"c")

    # ---------------------------------------------------------------- the IPC hub companion

    def _start_hub(self) -> None:
        """Start ``python -m headrace.layers.ipc`` for the default path and wait until it
        listens (or reports that another hub already does): workers started afterwards find
        it instead of electing one of themselves."""
        self._hub_restart_at = None
        if not self.config.ipc_hub:
            return
        command = [sys.executable, "-m", "headrace.layers.ipc", "--if-free"]
        command += ["--parent-pid", str(os.getpid())]
        self._hub = subprocess.Popen(command, stdout=subprocess.PIPE, process_group=0)
        assert self._hub.stdout is not None
        ready, _, _ = select.select([self._hub.stdout], [], [], HUB_START_TIMEOUT)
        line = self._hub.stdout.readline().decode().strip() if ready else "no answer"
        self._hub.stdout.close()
        logger.info("IPC layer hub: %s", line)

    def _watch_hub(self) -> None:
        hub = self._hub
        now = time.monotonic()
        if hub is not None and hub.poll() is not None:
            self._hub = None
            if hub.returncode != HUB_ALREADY_RUNNING and not self._stopping:
                logger.warning("IPC layer hub exited (status %d): restarting", hub.returncode)
                self._hub_restart_at = now + 1.0
        if self._hub_restart_at is not None and now >= self._hub_restart_at:
            self._start_hub()

    def _stop_hub(self) -> None:
        hub, self._hub = self._hub, None
        if hub is None or hub.poll() is not None:
            return
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(KILL_MARGIN)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()

    # ---------------------------------------------------------------- commands

    def reload(self, reason: str) -> None:
        """Start a new generation; the old one retires once every new worker is ready."""
        self.generation = next(self._generations)
        self._boot_failures = 0
        self._next_spawn = 0.0
        logger.info("%s: starting generation %d", reason, self.generation)

    def stop(self, reason: str) -> None:
        """Drain every worker; a second call forces them."""
        if self._stopping:
            logger.info("%s again: forcing workers to stop", reason)
            for worker in self.workers:
                self._signal_worker(worker, signal.SIGTERM)
            return
        logger.info("%s: stopping %d workers", reason, len(self.workers))
        self._stopping = True
        for worker in self.workers:
            self._retire(worker)

    # ---------------------------------------------------------------- the worker pool

    def _current(self) -> list[Worker]:
        return [w for w in self.workers if w.generation == self.generation and not w.retiring]

    def _maintain(self) -> None:
        current = self._current()
        missing = self.target - len(current)
        if missing > 0 and time.monotonic() >= self._next_spawn:
            for _ in range(missing):
                self._spawn()
        elif missing < 0:
            for worker in sorted(current, key=lambda w: w.started_at)[missing:]:
                self._retire(worker)
        current = self._current()
        if len(current) == self.target and all(worker.ready for worker in current):
            for worker in self.workers:
                if worker.generation != self.generation and not worker.retiring:
                    self._retire(worker)

    def _spawn(self) -> Worker:
        ready_read, ready_write = os.pipe()
        fds = [listener.sock.fileno() for listener in self.listeners]
        index = next(self._indexes)
        spec = WorkerSpec(
            config=self.config,
            listeners=tuple(
                InheritedListener(fd, listener.description, listener.tls)
                for fd, listener in zip(fds, self.listeners, strict=True)
            ),
            ready_fd=ready_write,
            index=index,
            parent_pid=os.getpid(),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "headrace.server.supervisor", "--worker"],
            stdin=subprocess.PIPE,
            pass_fds=[*fds, ready_write],
            process_group=0,
        )
        os.close(ready_write)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(pickle.dumps(spec))
            process.stdin.close()
        worker = Worker(process, self.generation, index, ready_read)
        self.workers.append(worker)
        self._selector.register(ready_read, selectors.EVENT_READ, lambda: self._on_ready(worker))
        logger.info("Started worker %d (generation %d)", worker.pid, worker.generation)
        return worker

    def _on_ready(self, worker: Worker) -> None:
        try:
            data = os.read(worker.ready_pipe, 64)
        except OSError:
            data = b""
        if data:
            worker.ready = True
            self._ever_ready = True
            self._boot_failures = 0
            logger.info("Worker %d is ready", worker.pid)
        else:
            self._close_ready_pipe(worker)

    def _close_ready_pipe(self, worker: Worker) -> None:
        if worker.ready_pipe < 0:
            return
        self._selector.unregister(worker.ready_pipe)
        os.close(worker.ready_pipe)
        worker.ready_pipe = -1

    def _retire(self, worker: Worker) -> None:
        if worker.retiring:
            return
        worker.retiring = True
        worker.kill_at = time.monotonic() + self.config.timeout_graceful_shutdown + KILL_MARGIN
        self._signal_worker(worker, signal.SIGTERM)

    @staticmethod
    def _signal_worker(worker: Worker, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(signum)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.kill_at is not None and now >= worker.kill_at:
                logger.warning("Worker %d did not stop in time: killing it", worker.pid)
                self._signal_worker(worker, signal.SIGKILL)
                worker.kill_at = None

    def _reap(self) -> None:
        for worker in list(self.workers):
            status = worker.process.poll()
            if status is None:
                continue
            self.workers.remove(worker)
            self._close_ready_pipe(worker)
            if worker.retiring:
                logger.info("Worker %d stopped", worker.pid)
            else:
                self._on_unexpected_exit(worker, status)

    def _on_unexpected_exit(self, worker: Worker, status: int) -> None:
        if worker.ready:
            logger.warning("Worker %d exited (status %d): replacing it", worker.pid, status)
            return
        self._boot_failures += 1
        delay = min(0.1 * 2**self._boot_failures, MAX_BACKOFF)
        self._next_spawn = time.monotonic() + delay
        logger.error("Worker %d failed to boot (status %d)", worker.pid, status)
        old = [w for w in self.workers if w.generation != self.generation and not w.retiring]
        if old:
            self._abandon_reload(old)
        elif (
            not self._ever_ready
            and not self.config.reload
            and self._boot_failures >= MAX_BOOT_FAILURES
        ):
            logger.error("Workers keep failing to boot: giving up")
            self._exit_status = 1
            self.stop("boot failure")

    def _abandon_reload(self, old: list[Worker]) -> None:
        logger.error("Reload abandoned: generation %d keeps serving", old[0].generation)
        for worker in self._current():
            self._retire(worker)
        self.generation = max(worker.generation for worker in old)
        self._next_spawn = 0.0

    def _cleanup(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self._stop_hub()
        signal.set_wakeup_fd(-1)
        for listener in self.listeners:
            listener.sock.close()
            if listener.unix_path and listener.tls is None:
                with contextlib.suppress(OSError):
                    os.unlink(listener.unix_path)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()
        os.close(self._change_read)
        os.close(self._change_write)


def supervise(config: Config) -> int:
    """Run the supervisor for ``config``; returns the process exit status."""
    return Supervisor(config).run()


# -------------------------------------------------------------------- the worker side


def _default_layer_backend() -> str | None:
    """The ``BACKEND`` of the application's default channel layer ("" when none is
    configured), or None when the application uses neither headrace's layers nor Django.

    Reads only modules the application imported (``sys.modules``): the server package never
    imports the framework or Django itself."""
    layers = sys.modules.get("headrace.layers")
    if layers is not None:
        configs = layers.channel_layers.configs
        if configs:
            return str(configs.get("default", {}).get("BACKEND", ""))
    conf = sys.modules.get("django.conf")
    if conf is None or not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    settings = conf.settings
    if not settings.configured:
        return None
    configured: dict[str, Any] = getattr(settings, "CHANNEL_LAYERS", None) or {}
    return str(configured.get("default", {}).get("BACKEND", ""))


def _layer_warning(config: Config) -> str | None:
    """Why groups will not span workers: the application configures no channel layer (Django)
    or a per-process in-memory one (Django settings or ``channel_layers.configure``)."""
    backend = _default_layer_backend()
    if backend is None or (backend and "InMemory" not in backend):
        return None
    what = "no CHANNEL_LAYERS layer is configured" if not backend else f"{backend} is per-process"
    return (
        f"headrace: --workers {config.workers} runs {config.workers} processes but {what}: "
        "the in-memory layer cannot span processes, so group messages will not reach consumers "
        "in other workers. Use the IPC layer (same host, nothing to install): CHANNEL_LAYERS = "
        '{"default": {"BACKEND": "headrace.layers.ipc.IPCChannelLayer"}}\n'
    )


class RequestLimit:
    """ASGI middleware that drains the server after ``limit`` requests.

    The request that reaches the limit starts the drain and then yields to the event loop until
    the server has stopped accepting, before the application runs: otherwise a fast client could
    get its response, reconnect and be accepted by this worker just before the drain closes
    connections that have not sent a request yet. Its next connection waits in the kernel's
    backlog for the replacement worker instead."""

    def __init__(self, app: Any, limit: int, server: Callable[[], Any]) -> None:
        self.app = app
        self.remaining = limit
        self.server = server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.remaining -= 1
            if self.remaining == 0:
                await self._start_drain()
        await self.app(scope, receive, send)

    async def _start_drain(self) -> None:
        logger.info("Served --limit-max-requests requests: recycling this worker")
        server = self.server()
        server.shutdown()
        for _ in range(DRAIN_START_YIELDS):
            if server.state.shutting_down:
                return
            await asyncio.sleep(0)


def _watch_readiness_and_parent(server: Any, spec: WorkerSpec) -> None:
    while not server.started.wait(PARENT_CHECK_INTERVAL):
        if os.getppid() != spec.parent_pid:
            server.shutdown()
            return
    with contextlib.suppress(OSError):
        os.write(spec.ready_fd, b"R")
        os.close(spec.ready_fd)
    while os.getppid() == spec.parent_pid:
        time.sleep(PARENT_CHECK_INTERVAL)
    logger.warning("Supervisor is gone: worker %d shutting down", os.getpid())
    server.shutdown()


def worker_main() -> int:
    """Entry point of one worker process (reads its :class:`WorkerSpec` from stdin)."""
    from headrace.server.accesslog import access_log_stream, setup_logging
    from headrace.server.server import Server, load_app, run

    spec: WorkerSpec = pickle.loads(sys.stdin.buffer.read())
    config = spec.config
    setup_logging(config)
    sys.path.insert(0, ".")
    try:
        app = load_app(config.application, config.http_timeout)
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"headrace: cannot load application {config.application!r}: {exc}\n")
        return 1
    warning = _layer_warning(config) if spec.index == 0 and config.workers > 1 else None
    if warning:
        sys.stderr.write(warning)
    listeners = [
        Listener(sock=socket.socket(fileno=item.fd), description=item.description, tls=item.tls)
        for item in spec.listeners
    ]
    for listener in listeners:
        listener.sock.setblocking(False)
    holder: list[Server] = []
    if config.limit_max_requests:
        app = RequestLimit(app, config.limit_max_requests, lambda: holder[0])

    def on_server(server: Server) -> None:
        holder.append(server)
        threading.Thread(
            target=_watch_readiness_and_parent, args=(server, spec), daemon=True
        ).start()

    stream = access_log_stream(config)
    from headrace.server.accesslog import AccessLogger

    access_log = AccessLogger(stream) if stream is not None else None
    return run(config, listeners, app=app, access_log=access_log, on_server=on_server)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        raise SystemExit(worker_main())
    sys.stderr.write("usage: python -m headrace.server.supervisor --worker (started by headrace)\n")
    raise SystemExit(2)
