"""``manage.py runworker`` as the Channels-1 worker: real worker processes over IPC and Redis,
driven by 1.x messages sent through the driver's ASGI-1 view of the same layer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable

from headrace.asgi import AsgiChannelLayer
from tests.worker1.conftest import ROOT, WAIT, WorkerProcess, receive

StartWorker = Callable[..., WorkerProcess]


def release_channel() -> str:
    """A normal channel a consumer in a worker waits on (a ``!`` channel would be the
    driver's own: only the process that made it may receive it)."""
    return f"test.release.{uuid.uuid4().hex}"


def test_consumers_get_messages_with_path_kwargs(
    view: AsgiChannelLayer, start_worker: StartWorker
) -> None:
    worker = start_worker()
    reply = view.new_channel("test.reply!")
    view.send("worker1.echo", {"reply": reply, "value": 1})
    assert receive(view, reply) == {
        "pid": worker.pid,
        "channel": "worker1.echo",
        "value": 1,
    }
    view.send("worker1.rooms", {"reply": reply, "path": "/rooms/lobby/42/"})
    assert receive(view, reply) == {
        "pid": worker.pid,
        "room": "lobby",
        "number": "42",
        "path": "/rooms/lobby/42/",
    }
    view.send("worker1.async", {"reply": reply, "value": "async"})
    assert receive(view, reply)["value"] == "async"
    # A message that matches no route's filters is logged, and the worker goes on.
    view.send("worker1.rooms", {"reply": reply, "path": "/elsewhere/"})
    view.send("worker1.echo", {"reply": reply, "value": 2})
    assert receive(view, reply)["value"] == 2
    worker.wait_for_output("No route for a message on 'worker1.rooms'")
    assert worker.stop() == 0


def test_only_and_exclude_channels(view: AsgiChannelLayer, start_worker: StartWorker) -> None:
    excluding = start_worker("--exclude-channels", "worker1.echo", "--exclude-channels", "http.*")
    banner = excluding.stdout()
    assert "worker1.other" in banner
    assert "worker1.echo" not in banner and "http.request" not in banner
    reply = view.new_channel("test.reply!")
    view.send("worker1.echo", {"reply": reply, "value": "for the other worker"})
    view.send("worker1.other", {"reply": reply, "value": "other"})
    assert receive(view, reply) == {
        "pid": excluding.pid,
        "channel": "worker1.other",
        "value": "other",
    }
    only = start_worker("--only-channels", "worker1.ech*", "--only-channels", "nothing.*")
    assert "Running Channels-1 worker (1 thread(s)) for channels worker1.echo\n" in only.stdout()
    assert receive(view, reply) == {
        "pid": only.pid,
        "channel": "worker1.echo",
        "value": "for the other worker",
    }
    assert excluding.stop() == 0
    assert only.stop() == 0


def test_threads_run_consumers_at_once(view: AsgiChannelLayer, start_worker: StartWorker) -> None:
    worker = start_worker("--threads", "2", "--only-channels", "worker1.*")
    reply = view.new_channel("test.reply!")
    release = [release_channel() for _ in range(2)]
    for number, channel in enumerate(release):
        view.send("worker1.rendezvous", {"reply": reply, "release": channel, "value": number})
    # Both consumers are running (each waits for its release) before either is released.
    started = [receive(view, reply), receive(view, reply)]
    assert {message["step"] for message in started} == {"started"}
    assert started[0]["thread"] != started[1]["thread"]
    for channel in release:
        view.send(channel, {})
    finished = [receive(view, reply), receive(view, reply)]
    assert sorted(message["value"] for message in finished) == [0, 1]
    assert worker.stop() == 0


def test_a_consumer_error_is_logged_and_the_worker_goes_on(
    view: AsgiChannelLayer, start_worker: StartWorker
) -> None:
    worker = start_worker()
    reply = view.new_channel("test.reply!")
    view.send("worker1.crash", {"reply": reply})
    view.send("worker1.crash", {"reply": reply})
    view.send("worker1.echo", {"reply": reply, "value": "after"})
    # what a failing consumer sent before raising goes out, as in Channels 1.x (the two
    # channels are read side by side, so the three answers may come in any order)
    answers = [receive(view, reply) for _ in range(3)]
    steps = sorted(answer.get("step") or answer["value"] for answer in answers)
    assert steps == ["after", "sent before the error", "sent before the error"]
    worker.wait_for_output("RuntimeError: consumer broke on purpose")
    assert "Error processing a message on 'worker1.crash'" in worker.stderr()
    assert worker.stop() == 0


def test_sends_are_held_until_the_consumer_returns(
    view: AsgiChannelLayer, start_worker: StartWorker
) -> None:
    worker = start_worker()
    reply = view.new_channel("test.reply!")
    release = release_channel()
    view.send("worker1.held", {"reply": reply, "release": release})
    # The immediate send arrives while the consumer still waits for its release ...
    assert receive(view, reply)["step"] == "immediate"
    assert view.receive([reply], block=False) == (None, None)
    # ... the held one only after it returned.
    view.send(release, {})
    assert receive(view, reply)["step"] == "held"
    assert worker.stop() == 0


def test_sigterm_lets_the_consumer_in_flight_finish(
    view: AsgiChannelLayer, start_worker: StartWorker
) -> None:
    worker = start_worker()
    reply = view.new_channel("test.reply!")
    release = release_channel()
    view.send("worker1.rendezvous", {"reply": reply, "release": release, "value": "last"})
    assert receive(view, reply)["step"] == "started"
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_output("Waiting for 1 consumer(s) in flight")
    assert worker.process.poll() is None
    view.send(release, {})
    assert receive(view, reply) == {"pid": worker.pid, "step": "finished", "value": "last"}
    assert worker.process.wait(WAIT) == 0


def test_a_killed_worker_loses_only_the_message_it_was_running(
    view: AsgiChannelLayer, start_worker: StartWorker, backend_kind: str
) -> None:
    first = start_worker("--only-channels", "worker1.*")
    reply = view.new_channel("test.reply!")
    view.send("worker1.rendezvous", {"reply": reply, "release": release_channel(), "value": -1})
    assert receive(view, reply)["step"] == "started"
    # Queued behind it on its own channel, each with its release already waiting.
    for number in range(4):
        release = release_channel()
        view.send(release, {})
        view.send("worker1.rendezvous", {"reply": reply, "release": release, "value": number})
    if backend_kind == "ipc":
        # And on channels whose receives the busy worker gave up (over Redis a blocking pop
        # still out for up to a second could take one along when the process dies then).
        for number in range(3):
            view.send("worker1.echo", {"reply": reply, "value": number})
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = start_worker("--only-channels", "worker1.*")
    expected = 11 if backend_kind == "ipc" else 8  # started + finished each, echoes
    answers = []
    for _ in range(expected):
        try:
            answers.append(receive(view, reply))
        except AssertionError:
            raise AssertionError(f"only these arrived: {answers}") from None
    assert {answer["pid"] for answer in answers} == {second.pid}
    finished = [answer["value"] for answer in answers if answer.get("step") == "finished"]
    assert finished == [0, 1, 2, 3]  # the message being run when it died (-1) is gone
    echoed = [answer["value"] for answer in answers if answer.get("channel") == "worker1.echo"]
    assert echoed == ([0, 1, 2] if backend_kind == "ipc" else [])
    assert second.stop() == 0


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "runworker", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "tests.worker1.site.settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_runworker_refuses_unusable_arguments() -> None:
    mixed = run_manage("--threads", "2", "worker1.echo")
    assert mixed.returncode != 0
    assert "--threads belong to the Channels-1 worker" in mixed.stderr
    nothing_left = run_manage("--only-channels", "nothing.*")
    assert nothing_left.returncode != 0
    assert "No channels left to listen on" in nothing_left.stderr
    no_threads = run_manage("--threads", "0")
    assert no_threads.returncode != 0
    assert "--threads must be at least 1" in no_threads.stderr
    no_routing = run_manage(DJANGO_SETTINGS_MODULE="tests.framework.worker_settings")
    assert no_routing.returncode != 0
    assert "Give the channel names to listen on, or set ROUTING" in no_routing.stderr
    for result in (mixed, nothing_left, no_threads, no_routing):
        assert "Traceback" not in result.stderr
