"""Listening sockets from Daphne-style bind options and endpoint strings.

Theory of operation
-------------------
Every bind option becomes an endpoint string first, exactly as Daphne does it
(``-b/-p`` → ``tcp:port=N:interface=H`` or ``tcp6:...``, ``-u`` → ``unix:PATH``, ``--fd`` →
``fd:fileno=N``), and the ``-e`` strings are added to those. Each string is parsed
(``:`` separates fields, ``\\:`` escapes a colon) into an :class:`EndpointSpec` and bound into
a :class:`Listener`: a listening socket plus, for TLS, the picklable :class:`TLSFiles` from
which an ``ssl.SSLContext`` is built (so a worker process can rebuild it). ``-b/-p/-u``
listeners use ``--ssl-certfile``/``--ssl-keyfile`` when given; ``ssl:`` endpoints carry their own
files. Binding a port in use raises :class:`BindError` with a readable message.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
from dataclasses import dataclass, field

from headrace.server.config import Config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
BACKLOG = 2048


class BindError(OSError):
    """A listener could not be created; the message says which and why."""


class EndpointError(ValueError):
    """An endpoint string could not be parsed."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where a listener's TLS material lives (picklable; see :meth:`context`)."""

    certfile: str
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    cert_reqs: int = ssl.CERT_NONE
    extra_chain: str | None = None
    ciphers: str | None = None
    http2: bool = True

    def context(self) -> ssl.SSLContext:
        # Built by headrace.server.tls (ciphers, mutual TLS, ALPN, the ASGI tls extension).
        from headrace.server.tls import TLSOptions, server_context

        options = TLSOptions(
            certfile=self.certfile,
            keyfile=self.keyfile,
            password=self.password,
            ca_certs=self.ca_certs,
            cert_reqs=ssl.VerifyMode(self.cert_reqs),
            ciphers=self.ciphers,
            http2=self.http2,
            extra_chain=self.extra_chain,
        )
        return server_context(options)


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    kind: str  # tcp, tcp6, unix, fd, ssl
    host: str | None = None
    port: int | None = None
    path: str | None = None
    fileno: int | None = None
    backlog: int = BACKLOG
    tls: TLSFiles | None = None


@dataclass(slots=True)
class Listener:
    """A bound, listening socket and how to serve it."""

    sock: socket.socket
    description: str
    tls: TLSFiles | None = None
    unix_path: str | None = field(default=None)
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The listener's SSL context (built once; raises on unreadable certificates)."""
        if self.tls is not None and self._context is None:
            self._context = self.tls.context()
        return self._context


def _escape(value: str) -> str:
    return value.replace(":", "\\:")


def endpoint_strings(config: Config) -> list[str]:
    """Daphne's rules: defaults only when nothing is bound, then -e strings added, sorted."""
    host, port = config.host, config.port
    if not any([host, port is not None, config.unix_socket, config.fd is not None]) and (
        not config.endpoints
    ):
        host, port = DEFAULT_HOST, DEFAULT_PORT
    elif host and port is None:
        port = DEFAULT_PORT
    elif port is not None and not host:
        host = DEFAULT_HOST
    strings = []
    if host and port is not None:
        bare = host.strip("[]")
        kind = "tcp6" if ":" in bare else "tcp"
        strings.append(f"{kind}:port={port}:interface={_escape(bare)}")
    if config.unix_socket:
        strings.append(f"unix:{config.unix_socket}")
    if config.fd is not None:
        strings.append(f"fd:fileno={config.fd}")
    return sorted(list(config.endpoints) + strings)


def _split_fields(text: str) -> list[str]:
    fields, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _int_field(options: dict[str, str], key: str, text: str) -> int:
    try:
        return int(options[key])
    except KeyError:
        raise EndpointError(f"endpoint {text!r} needs {key}=") from None
    except ValueError:
        raise EndpointError(f"endpoint {text!r}: {key} must be an integer") from None


def parse_endpoint(text: str, config: Config | None = None) -> EndpointSpec:
    """Parse one endpoint string (see module docs)."""
    kind, *rest = _split_fields(text)
    kind = kind.lower()
    if kind == "unix" and rest and "=" not in rest[0]:
        return EndpointSpec(kind="unix", path=":".join(rest))
    options: dict[str, str] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if not sep:
            raise EndpointError(f"endpoint {text!r}: field {item!r} is not key=value")
        options[key] = value
    backlog = int(options.get("backlog", BACKLOG))
    if kind in ("tcp", "tcp6"):
        default_host = "::" if kind == "tcp6" else "0.0.0.0"
        host = options.get("interface", default_host).strip("[]")
        port = _int_field(options, "port", text)
        return EndpointSpec(
            kind=kind, host=host, port=port, backlog=backlog, tls=_config_tls(config)
        )
    if kind == "unix":
        if "address" not in options:
            raise EndpointError(f"endpoint {text!r} needs a path")
        return EndpointSpec(kind="unix", path=options["address"], backlog=backlog)
    if kind == "fd":
        return EndpointSpec(kind="fd", fileno=_int_field(options, "fileno", text))
    if kind == "ssl":
        if "privateKey" not in options:
            raise EndpointError(f"endpoint {text!r} needs privateKey=")
        tls = TLSFiles(
            certfile=options.get("certKey", options["privateKey"]),
            keyfile=options["privateKey"],
            extra_chain=options.get("extraCertChain"),
            password=config.ssl_keyfile_password if config else None,
            ca_certs=config.ssl_ca_certs if config else None,
            cert_reqs=config.ssl_cert_reqs if config else ssl.CERT_NONE,
            ciphers=config.ssl_ciphers if config else None,
            http2=config.http2 if config else True,
        )
        host = options.get("interface", "0.0.0.0").strip("[]")
        port = _int_field(options, "port", text)
        return EndpointSpec(kind="ssl", host=host, port=port, backlog=backlog, tls=tls)
    raise EndpointError(f"endpoint {text!r}: unknown type {kind!r} (tcp, tcp6, unix, fd, ssl)")


def _config_tls(config: Config | None) -> TLSFiles | None:
    if config is None or not config.ssl_certfile:
        return None
    return TLSFiles(
        certfile=config.ssl_certfile,
        keyfile=config.ssl_keyfile,
        password=config.ssl_keyfile_password,
        ca_certs=config.ssl_ca_certs,
        cert_reqs=config.ssl_cert_reqs,
        ciphers=config.ssl_ciphers,
        http2=config.http2,
    )


def _bind_tcp(spec: EndpointSpec) -> socket.socket:
    assert spec.host is not None and spec.port is not None
    family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((spec.host, spec.port))
        sock.listen(spec.backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(spec: EndpointSpec) -> socket.socket:
    assert spec.path is not None
    try:
        if stat.S_ISSOCK(os.stat(spec.path).st_mode):
            os.unlink(spec.path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(spec.path)
        sock.listen(spec.backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _adopt_fd(spec: EndpointSpec) -> socket.socket:
    assert spec.fileno is not None
    sock = socket.socket(fileno=spec.fileno)
    if sock.type != socket.SOCK_STREAM:
        raise BindError(f"fd {spec.fileno} is not a stream socket")
    return sock


def _describe(spec: EndpointSpec) -> str:
    if spec.kind == "unix":
        return f"unix:{spec.path}"
    if spec.kind == "fd":
        return f"fd:{spec.fileno}"
    scheme = "https" if spec.tls else "http"
    host = f"[{spec.host}]" if spec.host and ":" in spec.host else spec.host
    return f"{scheme}://{host}:{spec.port}"


def bind_endpoint(spec: EndpointSpec) -> Listener:
    try:
        if spec.kind == "unix":
            sock = _bind_unix(spec)
        elif spec.kind == "fd":
            sock = _adopt_fd(spec)
        else:
            sock = _bind_tcp(spec)
    except OSError as exc:
        reason = "address already in use" if exc.errno == 98 else exc.strerror or str(exc)
        raise BindError(f"cannot listen on {_describe(spec)}: {reason}") from exc
    sock.setblocking(False)
    return Listener(sock=sock, description=_describe(spec), tls=spec.tls, unix_path=spec.path)


def bind_listeners(config: Config) -> list[Listener]:
    """Bind every listener the config asks for (closing the ones bound so far on error)."""
    specs = [parse_endpoint(text, config) for text in endpoint_strings(config)]
    if config.unix_socket and config.ssl_certfile:
        specs = [
            EndpointSpec(kind=s.kind, path=s.path, tls=_config_tls(config))
            if s.kind == "unix" and s.path == config.unix_socket
            else s
            for s in specs
        ]
    listeners: list[Listener] = []
    try:
        for spec in specs:
            listeners.append(bind_endpoint(spec))
    except BindError:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners
