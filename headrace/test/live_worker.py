"""A Channels-1 worker of :class:`headrace.test.ChannelLiveServerTestCase`
(``python -m headrace.test.live_worker`` in a child process): ``runworker`` for the test's
settings, with the static files consumer on ``http.request`` when the test case asks."""

from __future__ import annotations

import logging


def main() -> None:
    import django

    from headrace.test.live import apply_live_settings

    values = apply_live_settings()
    django.setup()
    from headrace.asgi import channel_layers
    from headrace.routing import Router
    from headrace.routing_worker import RoutingWorker

    worker_logger = logging.getLogger("headrace.worker")
    worker_logger.addHandler(logging.StreamHandler())
    worker_logger.setLevel(logging.INFO)
    wrapper = channel_layers[values["ALIAS"]]
    view_consumer = None
    if values["SERVE_STATIC"]:
        from headrace.staticfiles import StaticFilesConsumer

        view_consumer = StaticFilesConsumer()
    worker = RoutingWorker(
        wrapper.channel_layer,
        Router(wrapper.routing),
        threads=int(values["THREADS"]),
        view_consumer=view_consumer,
    )
    try:
        worker.run()
    finally:
        wrapper.channel_layer.close()


if __name__ == "__main__":
    main()
