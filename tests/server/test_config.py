"""Options are defined once: parsing, validation, the CLI and the generated docs agree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import headrace.server
from headrace.server.cli import parse_config
from headrace.server.config import Config, ConfigError, options_markdown, parse_size
from headrace.server.settings import ProtocolSettings
from tests.server.helpers import REPO


def test_docs_option_reference_is_current() -> None:
    docs = (REPO / "docs" / "server.md").read_text(encoding="utf-8")
    assert options_markdown() in docs, (
        "docs/server.md is stale: run python3 -m headrace.server.config --write docs/server.md"
    )


def test_daphne_flags_parse_with_daphne_defaults() -> None:
    config = parse_config(["app:application"])
    assert (config.host, config.port, config.unix_socket, config.fd) == (None, None, None, None)
    assert config.verbosity == 1
    assert config.websocket_timeout == 86400
    assert config.websocket_connect_timeout == 5
    assert config.ping_interval == 20 and config.ping_timeout == 30
    assert config.websocket_max_message_size == 1024 * 1024
    assert config.application_close_timeout == 10
    assert config.server_name == "headrace"
    assert config.root_path == ""
    assert config.log_fmt == "%(asctime)-15s %(levelname)-8s %(message)s"


def test_daphne_spellings_are_accepted() -> None:
    config = parse_config(
        [
            "-b", "0.0.0.0", "-p", "9000", "-u", "/tmp/x.sock", "--fd", "5",
            "-e", "tcp:port=1:interface=127.0.0.1", "-e", "unix:/tmp/y.sock",
            "-v", "2", "-t", "30", "--access-log", "-", "--websocket_timeout", "-1",
            "--websocket_connect_timeout", "3", "--ping-interval", "5", "--ping-timeout", "6",
            "--websocket-max-message-size", "100", "--websocket-max-frame-size", "50",
            "--application-close-timeout", "2", "--root-path", "/app", "--proxy-headers",
            "--proxy-headers-host", "X-Real-IP", "--proxy-headers-port", "X-Real-Port",
            "-s", "edge", "mod:app",
        ]
    )  # fmt: skip
    assert config.host == "0.0.0.0" and config.port == 9000
    assert config.endpoints == ("tcp:port=1:interface=127.0.0.1", "unix:/tmp/y.sock")
    assert config.websocket_timeout == -1
    assert config.proxy_headers_host == "X-Real-IP"
    assert config.server_name == "edge"
    assert config.application == "mod:app"


def test_no_server_name_clears_it() -> None:
    assert parse_config(["--no-server-name", "m:a"]).server_name == ""


def test_sizes_accept_suffixes() -> None:
    assert parse_size("16k") == 16384
    assert parse_size("1MiB") == 1024 * 1024
    assert parse_config(["--max-request-header-size", "32KiB", "m:a"]).max_request_header_size == (
        32768
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "http"], "-p/--port"),
        (["-p", "70000"], "-p/--port"),
        (["-v", "7"], "-v/--verbosity"),
        (["--lifespan", "maybe"], "--lifespan"),
        (["--timeout-keep-alive", "-1"], "--timeout-keep-alive"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--proxy-headers-host", "X-Real-IP"], "--proxy-headers"),
    ],
)
def test_bad_values_exit_2_naming_the_option(args: list[str], named: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config([*args, "m:a"])
    assert exit_info.value.code == 2
    result = subprocess.run(
        [sys.executable, "-m", "headrace", *args, "m:a"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert named.encode() in result.stderr


def test_programmatic_config_validates() -> None:
    with pytest.raises(ConfigError, match="--max-request-body-size"):
        Config(max_request_body_size=-1)
    with pytest.raises(ConfigError, match="--ssl-certfile"):
        Config(ssl_certfile="cert.pem")


def test_forwarded_allow_ips_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.2")
    assert parse_config(["m:a"]).forwarded_allow_ips == ("10.0.0.1", "10.0.0.2")


def test_protocol_settings_carry_the_options_the_wires_read() -> None:
    config = parse_config(
        [
            "--proxy-headers",
            "--proxy-headers-host",
            "X-Real-IP",
            "--forwarded-allow-ips",
            "10.0.0.0/8,192.0.2.7",
            "--timeout-request-headers",
            "3.5",
            "--root-path",
            "/mounted",
            "--server-name",
            "edge",
            "--no-http2",
            "app:app",
        ]
    )
    settings = ProtocolSettings.from_config(config)
    assert settings.limits.request_header_timeout == 3.5
    assert settings.proxy.headers
    assert settings.proxy.host_header == b"x-real-ip"
    assert settings.proxy.port_header == b"x-forwarded-port"
    assert settings.proxy.is_trusted(("10.1.2.3", 1)) and settings.proxy.is_trusted(
        ("192.0.2.7", 1)
    )
    assert not settings.proxy.is_trusted(("127.0.0.1", 1))
    assert settings.root_path == "/mounted"
    assert settings.server_header == settings.websocket.server_header == b"edge"
    assert settings.http2 is None
    assert ProtocolSettings.from_config(parse_config(["app:app"])).http2 is not None


WIRE_AND_STREAM_DIRS = ("wires", "streams")


def test_wires_and_streams_read_no_config() -> None:
    """Wires and streams take their options from ProtocolSettings, never from the Config."""
    server_dir = Path(headrace.server.__file__).parent
    readers = []
    for folder in WIRE_AND_STREAM_DIRS:
        for path in sorted((server_dir / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "config":
                    readers.append(f"{folder}/{path.name}:{node.lineno}")
    assert readers == []
