"""Every server option, defined once.

Theory of operation
-------------------
``Config`` is a frozen dataclass whose fields ARE the option list: each field is declared with
:func:`option`, which stores an :class:`OptionSpec` (flags, help, parser, validator, argparse
action) in the field's metadata. Everything else is derived from those fields:

- ``headrace.server.cli`` builds its argparse parser with :func:`add_arguments`;
- programmatic users (the workers supervisor, Django's runserver) call ``Config(...)`` or
  :meth:`Config.from_mapping` and get the same validation;
- ``docs/server.md``'s option reference is generated: ``python3 -m headrace.server.config
  --write docs/server.md`` refreshes it (``--markdown`` prints it); a test checks it is current.

Adding an option is adding ONE field to ``Config``: give it a type, a default and
``option("--flag", help=..., parse=..., validate=...)``. A value that fails ``parse`` or
``validate`` raises :class:`ConfigError` naming the option's flag; the CLI turns that into exit
status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from headrace.exceptions import ConfigError as ConfigError  # the one class; re-exported here

OptionAction = Literal["store", "store_true", "append", "positional"]


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How one ``Config`` field appears on the command line and in the docs."""

    flags: tuple[str, ...]
    help: str
    parse: Callable[[str], Any] | None = None
    validate: Callable[[Any], str | None] | None = None
    action: OptionAction = "store"
    off_flag: str | None = None
    off_value: Any = None
    env: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def display_name(self) -> str:
        return "/".join(self.flags) if self.flags else "application"


def option(
    *flags: str,
    default: Any,
    help: str,
    parse: Callable[[str], Any] | None = None,
    validate: Callable[[Any], str | None] | None = None,
    action: OptionAction = "store",
    off_flag: str | None = None,
    off_value: Any = None,
    env: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a ``Config`` field together with its command-line spec."""
    spec = OptionSpec(
        flags=flags,
        help=help,
        parse=parse,
        validate=validate,
        action=action,
        off_flag=off_flag,
        off_value=off_value,
        env=env,
        metavar=metavar,
        choices=choices,
    )
    if isinstance(default, list | tuple):
        frozen = tuple(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


# -- value parsers and validators (each returns an error message or None) ---------------------


def _non_negative(value: Any) -> str | None:
    if value is None:
        return None
    return "must be >= 0" if value < 0 else None


def _positive(value: Any) -> str | None:
    if value is None:
        return None
    return "must be > 0" if value <= 0 else None


def _port(value: Any) -> str | None:
    if value is None:
        return None
    return None if 0 <= value <= 65535 else "must be between 0 and 65535"


def _timeout_or_infinite(value: Any) -> str | None:
    return None if value == -1 or value >= 0 else "must be >= 0, or -1 for infinite"


def _verbosity(value: Any) -> str | None:
    return None if value in (0, 1, 2, 3) else "must be 0, 1, 2 or 3"


def _cert_reqs(value: Any) -> str | None:
    return None if value in (0, 1, 2) else "must be 0 (none), 1 (optional) or 2 (required)"


def _application(value: Any) -> str | None:
    if value == "":
        return None
    module, _, attr = str(value).partition(":")
    if not module or (":" in str(value) and not attr):
        return "must look like path.to.module:attribute"
    return None


def parse_size(text: str) -> int:
    """Parse ``16384``, ``16k``, ``16KiB``, ``1m`` or ``1MiB`` into bytes."""
    cleaned = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = 1
    for suffix, multiplier in (("k", 1024), ("m", 1024 * 1024), ("g", 1024**3)):
        if cleaned.endswith(suffix):
            cleaned, factor = cleaned[:-1], multiplier
            break
    return int(cleaned) * factor


def parse_ip_list(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of addresses (``*`` trusts everyone)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


# -- the options -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The server configuration; every field is one command-line option (see module docs)."""

    application: str = option(
        default="",
        help="The ASGI application to serve, as path.to.module:attribute.",
        action="positional",
        validate=_application,
    )
    host: str | None = option(
        "-b",
        "--bind",
        default=None,
        help="The host/address to bind to (default 127.0.0.1 when no other bind option is given).",
    )
    port: int | None = option(
        "-p",
        "--port",
        default=None,
        parse=int,
        validate=_port,
        help="Port number to listen on (default 8000 when no other bind option is given).",
    )
    unix_socket: str | None = option(
        "-u",
        "--unix-socket",
        default=None,
        help="Bind to a UNIX socket rather than a TCP host/port.",
    )
    fd: int | None = option(
        "--fd",
        default=None,
        parse=int,
        validate=_non_negative,
        help="Serve an already-listening socket inherited as this file descriptor.",
    )
    endpoints: tuple[str, ...] = option(
        "-e",
        "--endpoint",
        default=(),
        action="append",
        help="Endpoint string (repeatable): tcp:port=N:interface=H, tcp6:..., unix:PATH, "
        "fd:fileno=N, ssl:port=N:privateKey=F:certKey=F[:extraCertChain=F].",
    )
    verbosity: int = option(
        "-v",
        "--verbosity",
        default=1,
        parse=int,
        validate=_verbosity,
        help="How verbose to make the output: 0 warnings, 1 info + access log, 2-3 debug.",
    )
    http_timeout: float | None = option(
        "-t",
        "--http-timeout",
        default=None,
        parse=float,
        validate=_positive,
        help="Seconds an HTTP request may take: 503 if the response has not started, "
        "else the connection is cut off. Unlimited by default.",
    )
    access_log: str | None = option(
        "--access-log",
        default=None,
        help="Where to write the access log (- for stdout, the default for verbosity >= 1).",
    )
    log_fmt: str = option(
        "--log-fmt",
        default="%(asctime)-15s %(levelname)-8s %(message)s",
        help="Log format to use (Python logging syntax).",
    )
    websocket_timeout: float = option(
        "--websocket_timeout",
        default=86400,
        parse=float,
        validate=_timeout_or_infinite,
        help="Maximum time to allow a websocket to be connected. -1 for infinite.",
    )
    websocket_connect_timeout: float = option(
        "--websocket_connect_timeout",
        default=5,
        parse=float,
        validate=_timeout_or_infinite,
        help=(
            "Seconds the app has to accept (or deny) a WebSocket after its handshake "
            "arrives. -1 for no deadline."
        ),
    )
    ping_interval: float = option(
        "--ping-interval",
        default=20,
        parse=float,
        validate=_non_negative,
        help="Seconds a WebSocket must be idle before a keepalive ping is sent. 0 = no pings.",
    )
    ping_timeout: float = option(
        "--ping-timeout",
        default=30,
        parse=float,
        validate=_non_negative,
        help=(
            "Seconds of silence after a keepalive ping before the WebSocket is closed "
            "(any traffic from the client counts). 0 = never drop."
        ),
    )
    websocket_max_message_size: int = option(
        "--websocket-max-message-size",
        default=1024 * 1024,
        parse=parse_size,
        validate=_non_negative,
        help="Maximum size in bytes of an incoming WebSocket message; 0 disables the limit.",
    )
    websocket_max_frame_size: int = option(
        "--websocket-max-frame-size",
        default=1024 * 1024,
        parse=parse_size,
        validate=_non_negative,
        help="Maximum size in bytes of a single incoming WebSocket frame; 0 disables the limit.",
    )
    application_close_timeout: float = option(
        "--application-close-timeout",
        default=10,
        parse=float,
        validate=_non_negative,
        help="Seconds an application has to exit after client disconnect before it is killed.",
    )
    ws_per_message_deflate: bool = option(
        "--ws-per-message-deflate",
        default=True,
        off_flag="--no-ws-per-message-deflate",
        off_value=False,
        action="store_true",
        help="Negotiate permessage-deflate compression (RFC 7692) with WebSocket clients "
        "(on by default; --no-ws-per-message-deflate turns it off).",
    )
    websocket_receive_queue: int = option(
        "--websocket-receive-queue",
        default=32,
        parse=int,
        validate=_positive,
        help="Received WebSocket messages buffered for a slow application; at this many, "
        "reading from the client pauses until the application catches up.",
    )
    root_path: str = option(
        "--root-path",
        default="",
        help="The ASGI root_path for every request (a trusted Daphne-Root-Path header overrides).",
    )
    proxy_headers: bool = option(
        "--proxy-headers",
        default=False,
        action="store_true",
        help="Use X-Forwarded-For/-Port/-Proto for the client address and scheme "
        "(only from --forwarded-allow-ips peers).",
    )
    proxy_headers_host: str | None = option(
        "--proxy-headers-host",
        default=None,
        help="Header to read the client host from (requires --proxy-headers); e.g. X-Real-IP.",
    )
    proxy_headers_port: str | None = option(
        "--proxy-headers-port",
        default=None,
        help="Header to read the client port from (requires --proxy-headers).",
    )
    server_name: str = option(
        "-s",
        "--server-name",
        default="headrace",
        off_flag="--no-server-name",
        off_value="",
        help="Value of the Server response header; --no-server-name sends none.",
    )
    forwarded_allow_ips: tuple[str, ...] = option(
        "--forwarded-allow-ips",
        default=("127.0.0.1", "::1"),
        parse=parse_ip_list,
        env="FORWARDED_ALLOW_IPS",
        help="Comma-separated peers whose proxy headers and Daphne-Root-Path header are trusted "
        "(* for all). Daphne trusts every client.",
    )
    ssl_certfile: str | None = option(
        "--ssl-certfile", default=None, help="TLS certificate file (PEM) for -b/-p/-u listeners."
    )
    ssl_keyfile: str | None = option("--ssl-keyfile", default=None, help="TLS key file (PEM).")
    ssl_keyfile_password: str | None = option(
        "--ssl-keyfile-password", default=None, help="Password of the TLS key file."
    )
    ssl_ca_certs: str | None = option(
        "--ssl-ca-certs", default=None, help="CA certificates file to verify client certificates."
    )
    ssl_cert_reqs: int = option(
        "--ssl-cert-reqs",
        default=0,
        parse=int,
        validate=_cert_reqs,
        help="Client certificate requirement: 0 none, 1 optional, 2 required.",
    )
    ssl_ciphers: str | None = option(
        "--ssl-ciphers",
        default=None,
        help="OpenSSL cipher list for TLS 1.2 (default: ECDHE/DHE with AES-GCM or ChaCha20).",
    )
    http2: bool = option(
        "--http2",
        default=True,
        action="store_true",
        off_flag="--no-http2",
        off_value=False,
        help="Serve HTTP/2: ALPN h2 on TLS, prior knowledge and Upgrade: h2c on cleartext.",
    )
    http2_max_concurrent_streams: int = option(
        "--http2-max-concurrent-streams",
        default=100,
        parse=int,
        validate=_positive,
        help="Maximum concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).",
    )
    http2_initial_window_size: int = option(
        "--http2-initial-window-size",
        default=256 * 1024,
        parse=parse_size,
        validate=_positive,
        help="HTTP/2 per-stream receive window in bytes; reopened only as the app reads.",
    )
    limit_concurrency: int | None = option(
        "--limit-concurrency",
        default=None,
        parse=int,
        validate=_positive,
        help="Maximum concurrent requests; beyond it requests are answered 503.",
    )
    max_request_header_size: int = option(
        "--max-request-header-size",
        default=16 * 1024,
        parse=parse_size,
        validate=_positive,
        help="Maximum size of the request line plus headers; 431 beyond it.",
    )
    max_request_body_size: int = option(
        "--max-request-body-size",
        default=0,
        parse=parse_size,
        validate=_non_negative,
        help="Maximum request body size in bytes (0 = unlimited); 413 beyond it.",
    )
    timeout_keep_alive: float = option(
        "--timeout-keep-alive",
        default=5,
        parse=float,
        validate=_positive,
        help="Seconds an idle keep-alive connection is kept open.",
    )
    timeout_request_headers: float = option(
        "--timeout-request-headers",
        default=10,
        parse=float,
        validate=_positive,
        help="Seconds a client has to send a complete request head once it started one.",
    )
    timeout_graceful_shutdown: float = option(
        "--timeout-graceful-shutdown",
        default=30,
        parse=float,
        validate=_non_negative,
        help="Seconds in-flight requests get to finish on shutdown before they are cancelled.",
    )
    lifespan: str = option(
        "--lifespan",
        default="auto",
        choices=("auto", "on", "off"),
        help="Lifespan protocol: auto (use if the app supports it), on (required), off.",
    )
    loop: str = option(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="Event loop: auto (uvloop when installed), asyncio or uvloop.",
    )
    workers: int = option(
        "--workers",
        default=1,
        parse=int,
        validate=_positive,
        env="WEB_CONCURRENCY",
        help="Number of worker processes serving the same sockets (a supervisor binds them once, "
        "restarts dead workers, reloads on SIGHUP, adds/removes one on SIGTTIN/SIGTTOU).",
    )
    limit_max_requests: int | None = option(
        "--limit-max-requests",
        default=None,
        parse=int,
        validate=_positive,
        help="Recycle a worker after it has served this many requests (needs the supervisor: "
        "any --workers, or --reload).",
    )
    reload: bool = option(
        "--reload",
        default=False,
        action="store_true",
        help="Restart the workers when source files change (watchfiles when installed, else "
        "polling modification times). For development.",
    )
    reload_dirs: tuple[str, ...] = option(
        "--reload-dir",
        default=(),
        action="append",
        help="Directory to watch for --reload (repeatable; default: the current directory).",
    )
    reload_includes: tuple[str, ...] = option(
        "--reload-include",
        default=(),
        action="append",
        help="Glob of file names that trigger --reload (repeatable; default: *.py).",
    )
    reload_excludes: tuple[str, ...] = option(
        "--reload-exclude",
        default=(),
        action="append",
        help="Glob of paths never triggering --reload (repeatable; default: .*, *.py[cod], "
        "__pycache__, *~, *.swp).",
    )
    ipc_hub: bool = option(
        "--ipc-hub",
        default=True,
        off_flag="--no-ipc-hub",
        off_value=False,
        action="store_true",
        help="With the supervisor (--workers/--reload), run the IPC channel layer's hub for the "
        "default path (prefix asgi) in a companion process, so layer state outlives worker "
        "restarts and reloads (on by default; --no-ipc-hub lets the workers elect one).",
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            spec: OptionSpec = field.metadata["option"]
            value = getattr(self, field.name)
            if spec.choices is not None and value not in spec.choices:
                choices = ", ".join(spec.choices)
                raise ConfigError(f"{spec.display_name}: {value!r} is not one of {choices}")
            message = spec.validate(value) if spec.validate else None
            if message:
                raise ConfigError(f"{spec.display_name}: {message} (got {value!r})")
        if (self.proxy_headers_host or self.proxy_headers_port) and not self.proxy_headers:
            raise ConfigError("--proxy-headers-host/--proxy-headers-port need --proxy-headers")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ConfigError("--ssl-certfile and --ssl-keyfile go together")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Config:
        """Build a Config from field names, ignoring keys that are not options."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def option_fields() -> list[tuple[str, OptionSpec, Any]]:
    """(field name, spec, default) for every option, in declaration order."""
    result = []
    for field in dataclasses.fields(Config):
        default = (
            field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else field.default
        )
        result.append((field.name, field.metadata["option"], default))
    return result


# -- argparse derivation -----------------------------------------------------------------------


def _argparse_type(spec: OptionSpec) -> Callable[[str], Any]:
    parse = spec.parse or str

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"invalid value {text!r} ({exc})") from None
        message = spec.validate(value) if spec.validate else None
        if message:
            raise argparse.ArgumentTypeError(f"{message} (got {text!r})")
        return value

    return convert


def _environment_default(spec: OptionSpec, default: Any) -> Any:
    if spec.env is None or spec.env not in os.environ:
        return default
    return _argparse_type(spec)(os.environ[spec.env])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argparse argument (plus an optional off-switch) per ``Config`` field."""
    for name, spec, default in option_fields():
        if spec.action == "positional":
            parser.add_argument(name, help=spec.help, type=_argparse_type(spec))
            continue
        kwargs: dict[str, Any] = {"dest": name, "help": spec.help}
        if spec.action == "store_true":
            kwargs.update(action="store_true", default=default)
        else:
            kwargs.update(type=_argparse_type(spec), metavar=spec.metavar)
            kwargs["default"] = [] if spec.action == "append" else default
            if spec.action == "append":
                kwargs["action"] = "append"
            else:
                kwargs["default"] = _environment_default(spec, default)
            if spec.choices is not None:
                kwargs["choices"] = spec.choices
                kwargs["metavar"] = "{" + ",".join(spec.choices) + "}"
        parser.add_argument(*spec.flags, **kwargs)
        if spec.off_flag:
            parser.add_argument(
                spec.off_flag, dest=name, action="store_const", const=spec.off_value, help=None
            )


def config_from_namespace(namespace: argparse.Namespace) -> Config:
    values = dict(vars(namespace))
    for name, spec, _ in option_fields():
        if spec.action == "append" and name in values:
            values[name] = tuple(values[name] or ())
    return Config.from_mapping(values)


# -- documentation -----------------------------------------------------------------------------

DOCS_BEGIN = "<!-- options:begin (generated by python3 -m headrace.server.config --markdown) -->"
DOCS_END = "<!-- options:end -->"


def _format_default(spec: OptionSpec, default: Any) -> str:
    if spec.action == "positional":
        return "(required)"
    if isinstance(default, tuple):
        return "`" + ",".join(default) + "`" if default else "none"
    if default is None:
        return "none"
    return f"`{default}`"


def options_markdown() -> str:
    """The option reference table for docs/server.md."""
    lines = [DOCS_BEGIN, "", "| Option | Default | Meaning |", "| --- | --- | --- |"]
    for _name, spec, default in option_fields():
        flags = ", ".join(f"`{flag}`" for flag in spec.flags) or "`APPLICATION` (positional)"
        if spec.off_flag:
            flags += f", `{spec.off_flag}`"
        meaning = spec.help.replace("|", "\\|")
        if spec.choices:
            meaning += " Choices: " + ", ".join(f"`{c}`" for c in spec.choices) + "."
        if spec.env:
            meaning += f" Environment default: `{spec.env}`."
        lines.append(f"| {flags} | {_format_default(spec, default)} | {meaning} |")
    lines += ["", DOCS_END]
    return "\n".join(lines) + "\n"


def replace_docs_section(text: str) -> str:
    """``text`` with its generated option section replaced by the current one."""
    start, end = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if start == -1 or end == -1:
        return text.rstrip("\n") + "\n\n" + options_markdown()
    return text[:start] + options_markdown() + text[end + len(DOCS_END) + 1 :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the server option reference.")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table")
    parser.add_argument("--write", metavar="FILE", help="update the generated section of FILE")
    args = parser.parse_args(argv)
    if args.write:
        with open(args.write, encoding="utf-8") as handle:
            text = handle.read()
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(replace_docs_section(text))
        return 0
    sys.stdout.write(options_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
