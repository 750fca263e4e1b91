"""Options are defined once: parsing, validation, the CLI and the generated docs agree."""

from __future__ import annotations

import subprocess
import sys

import pytest

from headrace.server.cli import parse_config
from headrace.server.config import Config, ConfigError, options_markdown, parse_size
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
