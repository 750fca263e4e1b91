"""Endpoint strings and bind flags → listeners (Daphne's rules)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from headrace.server.config import Config
from headrace.server.endpoints import (
    BindError,
    EndpointError,
    bind_listeners,
    endpoint_strings,
    parse_endpoint,
)
from tests.conftest import free_port


def test_defaults_when_nothing_is_bound() -> None:
    assert endpoint_strings(Config()) == ["tcp:port=8000:interface=127.0.0.1"]


def test_host_alone_implies_port_8000_and_port_alone_implies_localhost() -> None:
    assert endpoint_strings(Config(host="0.0.0.0")) == ["tcp:port=8000:interface=0.0.0.0"]
    assert endpoint_strings(Config(port=9)) == ["tcp:port=9:interface=127.0.0.1"]


def test_ipv6_host_becomes_escaped_tcp6() -> None:
    (text,) = endpoint_strings(Config(host="[::1]", port=8001))
    assert text == "tcp6:port=8001:interface=\\:\\:1"
    spec = parse_endpoint(text)
    assert (spec.kind, spec.host, spec.port) == ("tcp6", "::1", 8001)


def test_all_flags_combine_sorted() -> None:
    config = Config(port=1, unix_socket="/tmp/a.sock", fd=7, endpoints=("tcp:port=2",))
    assert endpoint_strings(config) == [
        "fd:fileno=7",
        "tcp:port=1:interface=127.0.0.1",
        "tcp:port=2",
        "unix:/tmp/a.sock",
    ]


def test_ssl_endpoint_fields() -> None:
    spec = parse_endpoint("ssl:port=8443:privateKey=k.pem:certKey=c.pem:extraCertChain=x.pem")
    assert spec.kind == "ssl" and spec.port == 8443
    assert spec.tls is not None
    assert (spec.tls.keyfile, spec.tls.certfile, spec.tls.extra_chain) == (
        "k.pem",
        "c.pem",
        "x.pem",
    )


@pytest.mark.parametrize("text", ["tcp:interface=x", "tcp:port=x", "bogus:1", "fd:", "ssl:port=1"])
def test_bad_endpoint_strings(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def test_bind_tcp_and_unix(tmp_path: Path) -> None:
    port = free_port()
    path = str(tmp_path / "s.sock")
    listeners = bind_listeners(Config(port=port, unix_socket=path))
    try:
        families = sorted(listener.sock.family for listener in listeners)
        assert families == sorted([socket.AF_INET, socket.AF_UNIX])
    finally:
        for listener in listeners:
            listener.sock.close()


def test_port_in_use_is_a_bind_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(BindError, match="address already in use"):
            bind_listeners(Config(port=taken.getsockname()[1]))
