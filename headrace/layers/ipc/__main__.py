"""``python -m headrace.layers.ipc [--path P | --prefix NAME]``: run an IPC hub on its own.

Optional: layer users elect a hub among themselves. A standalone hub (e.g. a systemd unit next to
the web and worker processes, or the companion the ``--workers`` supervisor starts) simply wins
the election first and outlives them all, so queued messages survive worker restarts.

Exit status: 0 after SIGTERM/SIGINT (or when ``--parent-pid`` is gone), 4 when another hub
already holds the path's lock (silent with ``--if-free``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import sys

from headrace.layers.ipc.hub import bind_listener, new_event_loop, prepare_directory, serve_hub
from headrace.layers.ipc.layer import default_path


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m headrace.layers.ipc", description=__doc__)
    parser.add_argument("--path", help="hub socket path (default: derived from --prefix)")
    parser.add_argument("--prefix", default="asgi", help="layer prefix (default: asgi)")
    parser.add_argument(
        "--if-free", action="store_true", help="exit quietly (status 4) if a hub already runs"
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop when this parent process is gone"
    )
    return parser.parse_args(argv)


ALREADY_SERVED = 4


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # Parent death raises no event a portable program can await (prctl is Linux-only): poll.
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await asyncio.sleep(1.0)
    stop.set()


async def run(path: str, if_free: bool = False, parent_pid: int | None = None) -> int:
    prepare_directory(path)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        if not if_free:
            print(f"another hub already serves {path}", file=sys.stderr)
        print(f"headrace IPC hub already running on {path}", flush=True)
        return ALREADY_SERVED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    print(f"headrace IPC hub listening on {path}", flush=True)
    try:
        await serve_hub(bind_listener(path), stop)
        return 0
    finally:
        if watcher is not None:
            watcher.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(lock_fd)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    path = os.path.abspath(arguments.path or default_path(arguments.prefix))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run(path, arguments.if_free, arguments.parent_pid))


if __name__ == "__main__":
    raise SystemExit(main())
