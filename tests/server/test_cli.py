"""The ``headrace`` command as a subprocess: bind flags, access log, signals, exit statuses."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.server.helpers import (
    WAIT,
    blocking_request,
    headrace_process,
    stop_process,
    wait_for_listening,
)

APP = "tests.server.apps:hello"
GET = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def test_port_in_use_exits_1_with_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = headrace_process("-p", str(port), APP)
        _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert b"address already in use" in stderr
    assert str(port).encode() in stderr


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "h.sock")
    process = headrace_process("-u", path, "--loop", "asyncio", APP)
    try:
        wait_for_listening(process)
        result = subprocess.run(
            ["curl", "-s", "--unix-socket", path, "http://localhost/over-unix"],
            capture_output=True,
            timeout=WAIT,
        )
    finally:
        stop_process(process)
    assert result.stdout == b"hello /over-unix"


@pytest.mark.parametrize(
    ("loop", "expected"), [("auto", b"uvloop"), ("uvloop", b"uvloop"), ("asyncio", b"asyncio")]
)
def test_loop_option_selects_the_event_loop(loop: str, expected: bytes) -> None:
    port = free_port()
    process = headrace_process("-p", str(port), "--loop", loop, "tests.server.apps:loop_name")
    try:
        wait_for_listening(process)
        response = blocking_request(port, GET)
    finally:
        stop_process(process)
    assert response.endswith(b"\r\n\r\n" + expected)


def test_inherited_fd() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    process = headrace_process("--fd", str(listener.fileno()), APP, pass_fds=(listener.fileno(),))
    try:
        wait_for_listening(process)
        response = blocking_request(port, GET)
    finally:
        stop_process(process)
        listener.close()
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b"hello /x")


def test_endpoint_strings_combine_with_port(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    path = str(tmp_path / "e.sock")
    process = headrace_process(
        "-p", str(port), "-e", f"tcp:port={other}:interface=127.0.0.1", "-e", f"unix:{path}", APP
    )
    try:
        wait_for_listening(process)
        first = blocking_request(port, GET)
        second = blocking_request(other, GET)
        with socket.socket(socket.AF_UNIX) as unix:
            unix.settimeout(WAIT)
            unix.connect(path)
            unix.sendall(GET)
            third = b""
            while chunk := unix.recv(65536):
                third += chunk
    finally:
        stop_process(process)
    assert all(r.endswith(b"hello /x") for r in (first, second, third))


def test_sigterm_finishes_request_in_flight() -> None:
    port = free_port()
    process = headrace_process(
        "-p", str(port), "--timeout-graceful-shutdown", "10", "tests.server.apps:slow"
    )
    result: list[bytes] = []
    try:
        wait_for_listening(process)
        client = threading.Thread(target=lambda: result.append(blocking_request(port, GET)))
        client.start()
        assert process.stdout is not None
        assert process.stdout.readline() == b"IN-FLIGHT\n"
        process.send_signal(signal.SIGTERM)
        client.join(WAIT)
        process.wait(WAIT)
    finally:
        stop_process(process)
    assert result and result[0].startswith(b"HTTP/1.1 200 OK")
    assert result[0].endswith(b"finished")
    assert process.returncode == 0


def test_sigterm_during_lifespan_startup_serves_the_requests_already_waiting(
    tmp_path: Path,
) -> None:
    """The sockets listen before startup; what waits in the backlog is served, never reset."""
    port = free_port()
    release = tmp_path / "release"
    process = headrace_process(
        "-p",
        str(port),
        "tests.server.apps:slow_startup",
        env={"HEADRACE_TEST_RELEASE": str(release)},
    )
    clients: list[socket.socket] = []
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"STARTING\n"
        for _ in range(3):  # connected and sent while startup runs: they wait in the backlog
            client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            client.sendall(GET)
            clients.append(client)
        process.send_signal(signal.SIGTERM)
        wait_for_listening(process, b"received SIGTERM")
        release.touch()
        answers = [_read_until_closed(client) for client in clients]
        process.wait(WAIT)
    finally:
        for client in clients:
            client.close()
        stop_process(process)
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer
        assert answer.endswith(b"served")
    assert process.returncode == 0


def _read_until_closed(client: socket.socket) -> bytes:
    chunks = []
    while data := client.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def test_lifespan_startup_failure_exits_3() -> None:
    process = headrace_process("-p", str(free_port()), "tests.server.apps:failing_lifespan")
    _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 3
    assert b"no database" in stderr


def test_unimportable_application_exits_1() -> None:
    process = headrace_process("-p", str(free_port()), "tests.server.nope:app")
    _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert b"tests.server.nope" in stderr


def test_log_fmt_and_verbosity_1_access_log_on_stdout() -> None:
    port = free_port()
    process = headrace_process(
        "-p", str(port), "--log-fmt", "CUSTOM %(levelname)s %(message)s", APP
    )
    try:
        seen = wait_for_listening(process)
        blocking_request(port, GET)
    finally:
        stdout, _ = stop_process(process)
    assert b"CUSTOM INFO Listening on" in seen
    assert b'"GET /x" 200' in stdout


def test_verbosity_0_is_quiet() -> None:
    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()
    process = headrace_process(
        "-v", "0", "--fd", str(listener.fileno()), APP, pass_fds=(listener.fileno(),)
    )
    try:
        response = blocking_request(port, GET)  # the inherited socket queues it until served
    finally:
        stdout, stderr = stop_process(process)
        listener.close()
    assert response.endswith(b"hello /x")
    assert stdout == b""
    assert b"Listening" not in stderr


def test_unreadable_tls_files_exit_1(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    process = headrace_process(
        "-p", str(free_port()), "--ssl-certfile", missing, "--ssl-keyfile", missing, APP
    )
    _, stderr = process.communicate(timeout=WAIT)
    assert process.returncode == 1
    assert b"TLS" in stderr and b"missing.pem" in stderr
