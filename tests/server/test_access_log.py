"""The batched access log, through the real ``headrace`` process: nothing lost at shutdown,
lines out while the server runs, and whole lines from several workers sharing one pipe."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, service_reachable
from tests.server.helpers import (
    REPO,
    WAIT,
    blocking_request,
    headrace_process,
    stop_process,
    wait_for_listening,
)
from tests.workers.helpers import wait_until

APP = "tests.server.apps:hello"
LINE = re.compile(
    r'127\.0\.0\.1:\d+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] "GET (/[^" ]*)" 200 \d+'
)


def _pipelined(port: int, paths: list[str]) -> list[bytes]:
    """Send the requests (at most 256, the pipeline cap) in one write on one keep-alive
    connection; read every response."""
    requests = b"".join(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for path in paths)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(requests)
        received = b""
        bodies: list[bytes] = []
        while len(bodies) < len(paths):
            data = sock.recv(65536)
            assert data, f"connection closed after {len(bodies)} of {len(paths)} responses"
            received += data
            received = _take_responses(received, bodies)
    return bodies


def _take_responses(buffer: bytes, bodies: list[bytes]) -> bytes:
    """Move the complete Content-Length responses at the start of ``buffer`` into ``bodies``."""
    while True:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return buffer
        length = re.search(rb"content-length: (\d+)", buffer[:head_end], re.IGNORECASE)
        assert length is not None, buffer[:head_end]
        end = head_end + 4 + int(length.group(1))
        if len(buffer) < end:
            return buffer
        bodies.append(buffer[head_end + 4 : end])
        buffer = buffer[end:]


def _logged_paths(text: str) -> list[str]:
    paths = []
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        assert match is not None, f"not one whole access log line: {line!r}"
        paths.append(match.group(1))
    return paths


@contextlib.contextmanager
def _logging_to_file(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """A headrace process writing its access log to a file: (port, log file, process)."""
    port = free_port()
    log = tmp_path / "access.log"
    process = headrace_process("-p", str(port), "--access-log", str(log), APP)
    try:
        wait_for_listening(process)
        yield port, log, process
    finally:
        stop_process(process)


@pytest.mark.parametrize(
    ("request_bytes", "pattern"),
    [
        (
            b"GET /logged?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            r'127\.0\.0\.1:\d+ - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\] "GET /logged\?q=1" 200 13',
        ),
        (  # a request the server answers itself (no Host) is logged too
            b"GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n",
            r'127\.0\.0\.1:\d+ - - \[[^]]+\] "GET /no-host" 400 \d+',
        ),
    ],
    ids=["daphne-format", "server-rejection"],
)
def test_access_log_line(tmp_path: Path, request_bytes: bytes, pattern: str) -> None:
    with _logging_to_file(tmp_path) as (port, log, _):
        blocking_request(port, request_bytes)
    line = log.read_text().strip()
    assert re.fullmatch(pattern, line), line


def test_every_line_logged_before_sigterm_is_written_at_shutdown(tmp_path: Path) -> None:
    paths = [f"/r{index}" for index in range(400)]
    with _logging_to_file(tmp_path) as (port, log, process):
        bodies = [
            body for at in range(0, 400, 100) for body in _pipelined(port, paths[at : at + 100])
        ]
        process.send_signal(signal.SIGTERM)  # at once: the last batch may still be queued
        process.wait(WAIT)
    assert bodies == [f"hello {path}".encode() for path in paths]
    assert process.returncode == 0
    assert _logged_paths(log.read_text()) == paths


def test_lines_are_written_while_the_server_runs(tmp_path: Path) -> None:
    with _logging_to_file(tmp_path) as (port, log, process):
        blocking_request(
            port, b"GET /while-running HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        deadline = time.monotonic() + WAIT
        while "/while-running" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        still_running = process.poll() is None
        text = log.read_text()
    assert still_running
    assert _logged_paths(text) == ["/while-running"]


def test_two_workers_sharing_a_stdout_pipe_never_interleave_a_line(tmp_path: Path) -> None:
    """Long lines, many per batch (batches far above PIPE_BUF), two workers writing at once to
    the one stdout pipe they inherit: every line arrives whole, and every request is logged."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "headrace", "--workers", "2", "-p", str(port),
         "tests.workers.apps:pid_app"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.log").open("wb"),
        env={**_environment(), "HEADRACE_IPC_DIR": str(tmp_path)},
    )  # fmt: skip
    output: list[bytes] = []
    assert process.stdout is not None
    reader = threading.Thread(target=_read_slowly, args=(process.stdout.fileno(), output))
    reader.start()
    sent: list[str] = []
    pids: set[bytes] = set()
    try:
        wait_until(lambda: service_reachable("127.0.0.1", port), what="the workers' port")
        for round_ in range(40):
            batches = [
                [f"/w{round_}-{client}-{index}-" + "x" * (90 + 37 * index) for index in range(30)]
                for client in range(6)
            ]
            results: list[list[bytes]] = []
            threads = [
                threading.Thread(target=_collect, args=(port, batch, results)) for batch in batches
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
            assert len(results) == len(batches)
            sent += [path for batch in batches for path in batch]
            pids |= {body for result in results for body in result}
            if len(pids) == 2 and round_ >= 4:
                break
        process.send_signal(signal.SIGTERM)
        process.wait(WAIT * 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        reader.join(WAIT)
    assert len(pids) == 2, "both workers should have served"
    logged = _logged_paths(b"".join(output).decode())
    assert Counter(logged) == Counter(sent)


def _read_slowly(fd: int, output: list[bytes]) -> None:
    """Read the pipe in small sips, so it is often full: a writer then blocks part-way through
    a write larger than PIPE_BUF, and the other worker's write lands in the middle of it."""
    while data := os.read(fd, 4096):
        output.append(data)
        time.sleep(0.002)


def _collect(port: int, paths: list[str], results: list[list[bytes]]) -> None:
    results.append(_pipelined(port, paths))


def _environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))
