"""TLS: contexts (chains, key passwords, ciphers, mutual TLS), ALPN and the ASGI tls extension."""

from __future__ import annotations

import asyncio
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from headrace._types import Receive, Scope, Send
from headrace.server.config import Config
from headrace.server.endpoints import TLSFiles, parse_endpoint
from headrace.server.tls import (
    TLSConfigError,
    TLSOptions,
    build_server_context,
    parse_cert_reqs,
    rfc4514_name,
)
from tests.http2.support import h2_client, run_process, serve


class Material:
    """A root CA, an intermediate, a server leaf (chain file) and a client certificate."""

    def __init__(self, directory: Path) -> None:
        self.root = trustme.CA()
        intermediate = self.root.create_child_ca()
        self.server = intermediate.issue_cert("localhost", "127.0.0.1")
        self.client = self.root.issue_cert(
            "alice@example.com", common_name="alice, the tester", organization_name="Org"
        )
        self.chain = directory / "chain.pem"
        self.chain.write_bytes(b"".join(pem.bytes() for pem in self.server.cert_chain_pems))
        self.key = directory / "key.pem"
        self.server.private_key_pem.write_to_path(str(self.key))
        self.ca = directory / "ca.pem"
        self.root.cert_pem.write_to_path(str(self.ca))
        self.encrypted_key = directory / "key-encrypted.pem"
        key = serialization.load_pem_private_key(self.server.private_key_pem.bytes(), None)
        self.encrypted_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"s3cret"),
            )
        )

    def client_context(self, with_cert: bool = False, alpn: list[str] | None = None) -> Any:
        context = ssl.create_default_context()
        self.root.configure_trust(context)
        if with_cert:
            self.client.configure_cert(context)
        context.set_alpn_protocols(alpn or ["h2", "http/1.1"])
        return context


@pytest.fixture
def material(tmp_path: Path) -> Material:
    return Material(tmp_path)


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    tls = scope["extensions"].get("tls")
    body = repr({"version": scope["http_version"], "scheme": scope["scheme"], "tls": tls})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


async def test_alpn_h2_over_chain_with_encrypted_key_and_tls_scope(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.encrypted_key), password="s3cret")
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context()
        async with h2_client(port, ssl_context=context) as client:
            assert client.ssl_object.selected_alpn_protocol() == "h2"
            response = await client.request("/")
    info = eval(response.body.decode())  # repr of plain literals written by scope_app
    assert info["version"] == "2"
    assert info["scheme"] == "https"
    extension = info["tls"]
    assert extension["server_cert"] == material.server.cert_chain_pems[0].bytes().decode()
    assert extension["client_cert_chain"] == []
    assert extension["client_cert_name"] is None
    assert extension["client_cert_error"] is None
    assert extension["tls_version"] == 0x0304
    assert extension["cipher_suite"] in (0x1301, 0x1302, 0x1303)


async def test_mutual_tls_exposes_client_certificate(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key), ca_certs=str(material.ca), cert_reqs=2)
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context(with_cert=True)
        async with h2_client(port, ssl_context=context) as client:
            response = await client.request("/")
    extension = eval(response.body.decode())["tls"]
    [leaf] = extension["client_cert_chain"]
    expected = material.client.cert_chain_pems[0].bytes().decode()
    assert ssl.PEM_cert_to_DER_cert(leaf) == ssl.PEM_cert_to_DER_cert(expected)
    subject = x509.load_pem_x509_certificate(expected.encode()).subject
    assert extension["client_cert_name"] == subject.rfc4514_string()
    assert extension["client_cert_name"].startswith("CN=alice\\, the tester,")


async def test_mutual_tls_refuses_client_without_certificate(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key), ca_certs=str(material.ca), cert_reqs=2)
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context(with_cert=False)
        received = b""
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
            writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            received = await asyncio.wait_for(reader.read(), 10)
            writer.close()
        except (ssl.SSLError, ConnectionError) as error:
            assert "CERTIFICATE_REQUIRED" in str(error) or isinstance(error, ConnectionError)
        # The handshake is refused: not a single HTTP/2 byte (no SETTINGS) reaches the client.
        assert received == b""


async def first_bytes_after_preface(port: int, context: ssl.SSLContext) -> bytes:
    """What the server sends after an HTTP/2 preface (b"" when the handshake is refused)."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    except (ssl.SSLError, ConnectionError):
        return b""
    return received


async def test_tls12_cipher_selection(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key), ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        async with h2_client(port, ssl_context=context) as client:
            response = await client.request("/")
    extension = eval(response.body.decode())["tls"]
    assert extension["tls_version"] == 0x0303
    assert extension["cipher_suite"] == 0xC02B


async def test_alpn_http11_client_and_no_http2_option(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key), http2=False)
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context(alpn=["h2", "http/1.1"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    info = eval(data.partition(b"\r\n\r\n")[2].decode())
    assert info["version"] == "1.1"
    assert info["tls"]["tls_version"] == 0x0304
    assert info["tls"]["server_cert"].startswith("-----BEGIN CERTIFICATE-----")


async def test_curl_http2_over_tls(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key))
    async with serve(scope_app, tls=tls) as (port, _):
        argv = ["curl", "-sS", "--http2", "--cacert", str(material.ca), "-w", "|%{http_version}"]
        status, out, err = await run_process(
            *argv, f"https://localhost:{port}/", "--resolve", f"localhost:{port}:127.0.0.1"
        )
    assert status == 0, err
    assert out.decode().endswith("|2")


def test_ssl_endpoint_string_carries_tls_options(material: Material) -> None:
    config = Config(
        ssl_ca_certs=str(material.ca), ssl_cert_reqs=1, ssl_ciphers="ECDHE+AESGCM", http2=False
    )
    spec = parse_endpoint(f"ssl:port=0:privateKey={material.key}:certKey={material.chain}", config)
    assert spec.tls is not None
    assert (spec.tls.ca_certs, spec.tls.cert_reqs, spec.tls.http2) == (str(material.ca), 1, False)
    context = spec.tls.context()
    assert context.verify_mode == ssl.CERT_OPTIONAL


def test_wrong_key_password_and_missing_files_are_config_errors(material: Material) -> None:
    with pytest.raises(TLSConfigError):
        build_server_context(TLSOptions(str(material.chain), str(material.encrypted_key), "nope"))
    with pytest.raises(TLSConfigError):
        build_server_context(TLSOptions(str(material.chain) + ".missing"))
    with pytest.raises(TLSConfigError, match="not found"):
        missing_chain = str(material.chain) + ".missing"
        build_server_context(
            TLSOptions(str(material.chain), str(material.key), extra_chain=missing_chain)
        )
    with pytest.raises(TLSConfigError, match="ca-certs"):
        build_server_context(
            TLSOptions(str(material.chain), str(material.key), cert_reqs=ssl.CERT_REQUIRED)
        )
    with pytest.raises(TLSConfigError, match="cipher"):
        build_server_context(TLSOptions(str(material.chain), str(material.key), ciphers="NOPE"))


def test_server_context_defaults(material: Material) -> None:
    context = build_server_context(TLSOptions(str(material.chain), str(material.key)))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    names = {cipher["name"] for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"}
    assert names
    assert all("GCM" in name or "CHACHA20" in name for name in names)


def test_parse_cert_reqs_and_rfc4514() -> None:
    assert parse_cert_reqs("required") == ssl.CERT_REQUIRED
    assert parse_cert_reqs("CERT_OPTIONAL") == ssl.CERT_OPTIONAL
    assert parse_cert_reqs(0) == ssl.CERT_NONE
    with pytest.raises(TLSConfigError):
        parse_cert_reqs("sometimes")
    subject = ((("countryName", "NZ"),), (("commonName", " #x=y+z;"),), (("1.2.3", "v"),))
    assert rfc4514_name(subject) == "1.2.3=v,CN=\\ #x\\=y\\+z\\;,C=NZ"


def test_ssl_flags_reach_tcp_listeners(material: Material) -> None:
    config = Config(
        ssl_certfile=str(material.chain),
        ssl_keyfile=str(material.encrypted_key),
        ssl_keyfile_password="s3cret",
        ssl_ca_certs=str(material.ca),
        ssl_cert_reqs=2,
        ssl_ciphers="ECDHE+CHACHA20",
    )
    spec = parse_endpoint("tcp:port=0:interface=127.0.0.1", config)
    assert spec.tls is not None
    context = spec.tls.context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all("CHACHA20" in name for name in tls12)


async def test_cli_reports_bad_tls_files_cleanly(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    argv = ["-m", "headrace", "-p", "0", "--ssl-certfile", missing, "--ssl-keyfile", missing]
    status, _, err = await run_process(
        sys.executable, *argv, "examples.hello.asgi:application", limit=30
    )
    assert status == 1
    assert b"TLS: certificate or key file not found" in err
    assert b"Traceback" not in err


async def test_extra_chain_is_served_and_leaves_no_file_behind(
    material: Material, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaf_pem, intermediate_pem = (pem.bytes() for pem in material.server.cert_chain_pems)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(leaf_pem.rstrip(b"\n"))  # no final newline: the join must add one
    intermediates = tmp_path / "intermediates.pem"
    intermediates.write_bytes(intermediate_pem)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = Config()
    endpoint = f"ssl:port=0:privateKey={material.key}:certKey={leaf}:extraCertChain={intermediates}"
    spec = parse_endpoint(endpoint, config)
    assert spec.tls is not None
    # The client trusts only the root: verification needs the intermediate we send.
    async with (
        serve(scope_app, tls=spec.tls) as (port, _),
        h2_client(port, ssl_context=material.client_context()) as client,
    ):
        response = await client.request("/")
    assert list(scratch.iterdir()) == []
    assert eval(response.body.decode())["tls"]["server_cert"] == leaf_pem.decode()


async def test_optional_client_certificate(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key), ca_certs=str(material.ca), cert_reqs=1)
    async with serve(scope_app, tls=tls) as (port, _):
        async with h2_client(port, ssl_context=material.client_context()) as client:
            anonymous = eval((await client.request("/")).body.decode())["tls"]
        # A certificate the CA did not issue fails the handshake: client_cert_error stays None.
        stranger = trustme.CA().issue_cert("mallory@example.com")
        context = material.client_context()
        stranger.configure_cert(context)
        received = await first_bytes_after_preface(port, context)
    assert received == b""  # refused in the handshake: no SETTINGS, no app
    assert anonymous["client_cert_chain"] == []
    assert anonymous["client_cert_name"] is None
    assert anonymous["client_cert_error"] is None


async def test_h2c_upgrade_is_ignored_over_tls(material: Material) -> None:
    tls = TLSFiles(str(material.chain), str(material.key))
    async with serve(scope_app, tls=tls) as (port, _):
        context = material.client_context(alpn=["http/1.1"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.write(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    # RFC 9113 §3.1: "h2c" is for cleartext only; the request is served as HTTP/1.1.
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    assert eval(data.partition(b"\r\n\r\n")[2].decode())["version"] == "1.1"
