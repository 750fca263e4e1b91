"""``--workers``: serving, replacement, graceful reload, scaling, recycling and shutdown."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.workers.helpers import WAIT, get_pid, supervised, wait_until

APP = "tests.workers.apps:pid_app"


def test_two_workers_serve_the_same_port_and_a_killed_one_is_replaced() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with supervised("--workers", "2", "-p", str(port), APP, base_url=url, ready=2) as server:
        workers = server.workers()
        assert len(workers) == 2
        seen: set[int] = set()
        with httpx.Client(timeout=WAIT) as client, ThreadPoolExecutor(8) as pool:
            for _ in range(50):
                urls = [f"{url}/slow?ms=20"] * 8
                seen |= set(pool.map(lambda u: get_pid(client, u), urls))
                if seen == workers:
                    break
            assert seen == workers
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            server.wait_ready(3)
            wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers())
            assert server.workers() & workers == workers - {victim}
            assert get_pid(client, url) in server.workers()
        # A plain ASGI application uses no channel layer: no advice about layers.
        assert "IPCChannelLayer" not in server.output()


def _hammer(
    url: str, path: str, stop: threading.Event, results: list[int], errors: list[str]
) -> None:
    """Requests on a fresh connection each (``get_pid`` sends ``Connection: close``)."""
    with httpx.Client(timeout=WAIT) as client:
        while not stop.is_set():
            try:
                results.append(get_pid(client, url + path))
            except (httpx.HTTPError, AssertionError) as exc:
                errors.append(repr(exc))


RELOADS = 2


def test_sighup_reloads_under_load_drop_no_request() -> None:
    """Eight clients, each opening a new connection per request (instant ones and ones still in
    flight when the drain begins), through several reloads: every request gets its 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with supervised("--workers", "2", "-p", str(port), APP, base_url=url, ready=2) as server:
        generations = [server.workers()]
        stop = threading.Event()
        results: list[int] = []
        errors: list[str] = []
        paths = ["/", "/slow?ms=30"] * 4
        threads = [
            threading.Thread(target=_hammer, args=(url, path, stop, results, errors))
            for path in paths
        ]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: len(results) >= 50, what="load before the reload")
            for number in range(RELOADS):
                old = generations[-1]
                server.signal(signal.SIGHUP)
                server.wait_ready(2 * (number + 2))
                wait_until(lambda o=old: len(server.workers()) == 2 and not server.workers() & o)
                generations.append(server.workers())
                served_before = len(results)
                wait_until(lambda n=served_before: len(results) >= n + 50, what="load after")
        finally:
            stop.set()
            for thread in threads:
                thread.join(WAIT)
        assert errors == []
        assert all(set(results) & generation for generation in generations)


def test_web_concurrency_then_sigttin_adds_and_sigttou_removes_a_worker() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"WEB_CONCURRENCY": "2"}
    with supervised("-p", str(port), APP, base_url=url, ready=2, env=env) as server:
        assert len(server.workers()) == 2
        server.signal(signal.SIGTTIN)
        server.wait_ready(3)
        wait_until(lambda: len(server.workers()) == 3)
        with httpx.Client(timeout=WAIT) as client:
            assert get_pid(client, url) in server.workers()
        server.signal(signal.SIGTTOU)
        wait_until(lambda: len(server.workers()) == 2, what="a retired worker")
        assert "now 2 workers" in server.output()


def test_limit_max_requests_recycles_workers_without_errors() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    arguments = ("--workers", "1", "--limit-max-requests", "3", "-p", str(port), APP)
    with supervised(*arguments, base_url=url, ready=1) as server, httpx.Client(timeout=WAIT) as c:
        pids = [get_pid(c, url) for _ in range(10)]
        assert len(set(pids)) >= 3
        # Each recycled worker logs "is ready"; the log may trail the request it served.
        server.wait_ready(3)


def test_sigterm_lets_in_flight_requests_finish() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with supervised("--workers", "2", "-p", str(port), APP, base_url=url, ready=2) as server:
        with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=WAIT) as client:
            pending = pool.submit(client.get, f"{url}/slow?ms=800")
            wait_until(lambda: "slow request started" in server.output())
            server.signal(signal.SIGTERM)
            response = pending.result(WAIT)
        assert response.status_code == 200
        assert server.stop() == 0
        assert server.workers() == set()


def test_unix_socket_is_shared_and_removed_on_exit() -> None:
    folder = tempfile.mkdtemp(prefix="hr-uds-")
    path = os.path.join(folder, "web.sock")
    with supervised("--workers", "2", "-u", path, APP, base_url="", ready=2) as server:
        transport = httpx.HTTPTransport(uds=path)
        with httpx.Client(transport=transport, timeout=WAIT) as client:
            pid = get_pid(client, "http://localhost/")
        assert pid in server.workers()
        server.signal(signal.SIGHUP)
        server.wait_ready(4)
        assert Path(path).exists()
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=WAIT) as client:
            assert get_pid(client, "http://localhost/") in server.workers() | {pid}
        assert server.stop() == 0
    assert not Path(path).exists()
    os.rmdir(folder)


def test_workers_that_cannot_boot_make_the_supervisor_give_up() -> None:
    port = free_port()
    arguments = ("--workers", "2", "-p", str(port), "tests.workers.no_such_module:app")
    with supervised(*arguments, base_url="", ready=0) as server:
        began = time.monotonic()
        assert server.process.wait(WAIT) == 1
        assert time.monotonic() - began < WAIT
        assert "giving up" in server.output()
        assert "cannot load application" in server.output()


def test_every_bind_option_at_once(tmp_path: Path) -> None:
    """``-b ::1 -p`` and an ``-e tcp:`` string with ``--ssl-certfile`` (TLS), ``--fd``, an
    ``-e unix:`` string and an ``-e ssl:`` string: one supervisor binds them all once and both
    workers serve every one."""
    import trustme

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "::1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    verify = ssl.create_default_context()
    authority.configure_trust(verify)
    inherited = socket.socket()
    inherited.bind(("127.0.0.1", 0))
    inherited.listen(128)
    fd = inherited.fileno()
    unix_path = str(tmp_path / "web.sock")
    v6_port, tcp_port, ssl_port = free_port(), free_port(), free_port()
    tls = ("--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile))
    ssl_endpoint = (
        f"ssl:port={ssl_port}:interface=127.0.0.1:privateKey={keyfile}:certKey={certfile}"
    )
    arguments = ("--workers", "2", "-b", "::1", "-p", str(v6_port), *tls, "--fd", str(fd))
    arguments += ("-e", f"tcp:port={tcp_port}:interface=127.0.0.1", "-e", f"unix:{unix_path}")
    arguments += ("-e", ssl_endpoint, APP)
    urls = [
        f"https://[::1]:{v6_port}/",
        f"https://127.0.0.1:{tcp_port}/",
        f"https://127.0.0.1:{ssl_port}/",
        f"http://127.0.0.1:{inherited.getsockname()[1]}/",
    ]
    try:
        with supervised(*arguments, base_url="", ready=2, pass_fds=(fd,)) as server:
            workers = server.workers()
            with httpx.Client(verify=verify, timeout=WAIT) as client:
                for url in urls:
                    assert get_pid(client, url) in workers, url
            transport = httpx.HTTPTransport(uds=unix_path)
            with httpx.Client(transport=transport, timeout=WAIT) as client:
                assert get_pid(client, "http://localhost/") in workers
    finally:
        inherited.close()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_and_hub_leave_when_the_supervisor_is_killed() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with supervised("--workers", "2", "-p", str(port), APP, base_url=url, ready=2) as server:
        children = server.children()
        assert len(children) == 3  # two workers and the IPC hub companion
        server.signal(signal.SIGKILL)
        server.process.wait(WAIT)
        wait_until(lambda: not any(_alive(pid) for pid in children), what="orphans to exit")
