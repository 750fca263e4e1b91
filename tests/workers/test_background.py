"""``runworker``-style processes started apart from ``--workers`` share the supervisor's hub."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.conftest import free_port
from tests.workers.helpers import ROOT, WAIT, supervised


def test_web_workers_and_a_separate_background_worker_share_the_hub() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    arguments = ("--workers", "2", "-p", str(port), "tests.workers.background:application")
    with supervised(*arguments, base_url=url, ready=2) as server:
        hub_dir = str(server.log.parent)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HEADRACE_IPC_DIR": hub_dir}
        background = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.background"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        try:
            assert background.stdout is not None
            assert background.stdout.readline().startswith(b"background worker ready")
            with httpx.Client(timeout=WAIT) as client:
                for number in range(5):
                    response = client.get(f"{url}/job?n={number}")
                    result, _, worker, _, web = response.text.split()
                    assert int(result) == number * 2
                    assert int(worker) == background.pid
                    assert int(web) in server.workers()
            assert server.hub() is not None
        finally:
            background.terminate()
            background.wait(WAIT)
