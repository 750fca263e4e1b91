"""The ``headrace`` command: Daphne's command line, derived from ``headrace.server.config``.

Exit statuses: 0 after a clean shutdown, 1 when a listener cannot be bound or the application
cannot be imported, 2 for a bad option or value (argparse style, naming the option), 3 when
lifespan startup fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from headrace import __version__
from headrace.server.accesslog import AccessLogger, access_log_stream, setup_logging
from headrace.server.config import Config, ConfigError, add_arguments, config_from_namespace


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headrace",
        description="ASGI server (HTTP/1.1, HTTP/2, WebSocket) with Daphne's command line.",
    )
    parser.add_argument("--version", action="version", version=f"headrace {__version__}")
    add_arguments(parser)
    return parser


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse the command line into a Config; bad input exits with status 2."""
    parser = build_parser()
    namespace = parser.parse_args(argv)
    try:
        return config_from_namespace(namespace)
    except ConfigError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``headrace`` console script and ``python -m headrace``."""
    from headrace.server.server import load_app, run

    config = parse_config(argv)
    setup_logging(config)
    if config.workers > 1 or config.reload or config.limit_max_requests:
        from headrace.server.supervisor import supervise

        raise SystemExit(supervise(config))
    sys.path.insert(0, ".")
    try:
        app = load_app(config.application, config.http_timeout)
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"headrace: cannot load application {config.application!r}: {exc}\n")
        raise SystemExit(1) from None
    stream = access_log_stream(config)
    access_log = AccessLogger(stream) if stream is not None else None
    raise SystemExit(run(config, app=app, access_log=access_log))
