"""TLS for headrace listeners: building server SSL contexts and the ASGI ``tls`` extension.

Theory of operation
-------------------
Every TLS listener (``--ssl-*`` flags or an ``ssl:`` endpoint string) is described by one
:class:`TLSOptions` value. :func:`build_server_context` turns it into an
:class:`ssl.SSLContext` that:

* loads the certificate *chain* (the cert file may hold the leaf followed by intermediates;
  an ``extraCertChain`` file adds more) and the private key, decrypting it with the key
  password when one is given. ``ssl`` loads chains only from a file, so an extra chain is
  joined to the certificate in a private temporary directory that is removed at once;
  nothing is left on disk;
* refuses anything older than TLS 1.2 and, unless ``ciphers`` overrides it, offers only
  AEAD suites with forward secrecy, which is also what RFC 9113 §9.2.2 requires of TLS 1.2
  connections that negotiate HTTP/2;
* verifies client certificates against ``ca_certs`` when ``cert_reqs`` asks for it
  (mutual TLS: ``optional`` or ``required``);
* advertises ALPN ``h2`` (when HTTP/2 is enabled) and ``http/1.1``.

The context is wrapped in a :class:`ServerTLS`, which also keeps the server certificate in
PEM form and a cipher-name → IANA-number table, so that :meth:`ServerTLS.scope_extension`
can build the ASGI ``tls`` extension (``scope["extensions"]["tls"]``) for a finished
handshake from the connection's :class:`ssl.SSLObject` alone:

``server_cert``         the PEM certificate the server presented;
``client_cert_chain``   PEM certificates the client presented (the leaf first). Python before
                        3.13 (``SSLObject.get_unverified_chain``) exposes only the leaf, so on
                        3.11/3.12 the list holds the leaf alone; empty without a client cert;
``client_cert_name``    the client leaf's subject as an RFC 4514 string;
``client_cert_error``   always ``None`` here: OpenSSL aborts the handshake when a presented
                        certificate fails verification (with ``optional`` as with
                        ``required``), so a connection that reaches the app has none;
``tls_version``         the protocol number (``0x0303`` for TLS 1.2, ``0x0304`` for 1.3);
``cipher_suite``        the IANA 16-bit cipher suite number.
"""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headrace.exceptions import ConfigError

DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
"""TLS 1.2 suites offered by default (TLS 1.3 suites are always on and all acceptable)."""

CERT_REQS_BY_NAME: dict[str, ssl.VerifyMode] = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}

TLS_VERSION_NUMBERS: dict[str, int] = {
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}

RFC4514_ATTRIBUTE_NAMES: dict[str, str] = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "streetAddress": "STREET",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "userId": "UID",
}


_CONTEXT_ATTRIBUTE = "headrace_server_tls"
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)


class TLSConfigError(ConfigError):
    """A TLS option is invalid or a certificate/key file cannot be used."""


def parse_cert_reqs(value: str | int | ssl.VerifyMode) -> ssl.VerifyMode:
    """Accept ``none``/``optional``/``required``, ``0``/``1``/``2`` or a ``VerifyMode``."""
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, int):
        return ssl.VerifyMode(value)
    text = value.strip().lower()
    if text.isdigit():
        return ssl.VerifyMode(int(text))
    if text.startswith("cert_"):
        text = text[len("cert_") :]
    try:
        return CERT_REQS_BY_NAME[text]
    except KeyError:
        raise TLSConfigError(f"invalid certificate requirement {value!r}") from None


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """What a TLS listener needs; every field maps to one ``--ssl-*`` option or endpoint key."""

    certfile: str
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    cert_reqs: ssl.VerifyMode = ssl.CERT_NONE
    ciphers: str | None = None
    http2: bool = True
    extra_chain: str | None = None
    """A file of intermediate certificates sent after those in ``certfile``."""


def alpn_protocols(http2: bool) -> list[str]:
    """ALPN identifiers offered, most preferred first."""
    return ["h2", "http/1.1"] if http2 else ["http/1.1"]


def build_server_context(options: TLSOptions) -> ssl.SSLContext:
    """Build the server-side SSL context described by ``options`` (raises TLSConfigError)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    _load_chain(context, options)
    _set_ciphers(context, options.ciphers or DEFAULT_CIPHERS)
    _set_client_verification(context, options)
    context.set_alpn_protocols(alpn_protocols(options.http2))
    return context


def _load_chain(context: ssl.SSLContext, options: TLSOptions) -> None:
    try:
        if options.extra_chain:
            _load_joined_chain(context, options, options.extra_chain)
        else:
            context.load_cert_chain(options.certfile, options.keyfile, options.password)
    except FileNotFoundError as exc:
        paths = (options.certfile, options.keyfile, options.extra_chain)
        files = ", ".join(path for path in paths if path)
        raise TLSConfigError(f"certificate or key file not found ({files})") from exc
    except ssl.SSLError as exc:
        raise TLSConfigError(f"cannot load certificate chain or key: {exc}") from exc


def _load_joined_chain(context: ssl.SSLContext, options: TLSOptions, extra_chain: str) -> None:
    """Load ``certfile`` followed by ``extra_chain``; the joined file is deleted at once.

    Only certificates are joined (a key kept in ``certfile`` is read from there), so no key
    material is ever copied.
    """
    with open(options.certfile, "rb") as cert, open(extra_chain, "rb") as chain:
        blocks = _PEM_CERTIFICATE.findall(cert.read())
        joined = b"".join(block.rstrip(b"\r\n") + b"\n" for block in blocks) + chain.read()
    with tempfile.TemporaryDirectory(prefix="headrace-chain-") as folder:
        path = os.path.join(folder, "chain.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(joined)
        context.load_cert_chain(path, options.keyfile or options.certfile, options.password)


def _set_ciphers(context: ssl.SSLContext, ciphers: str) -> None:
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"no usable cipher in {ciphers!r}") from exc


def _set_client_verification(context: ssl.SSLContext, options: TLSOptions) -> None:
    if options.cert_reqs != ssl.CERT_NONE and not options.ca_certs:
        raise TLSConfigError("client certificate verification needs --ssl-ca-certs")
    if options.ca_certs:
        try:
            context.load_verify_locations(cafile=options.ca_certs)
        except (FileNotFoundError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot load CA certificates: {exc}") from exc
    context.verify_mode = options.cert_reqs


def first_pem_certificate(path: str) -> str | None:
    """The first PEM certificate in ``path`` (the leaf of a chain file), or None."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        return None
    return text[start : stop + len(end)] + "\n"


def cipher_suite_numbers(context: ssl.SSLContext) -> dict[str, int]:
    """OpenSSL cipher name → IANA 16-bit cipher suite number, for every enabled suite."""
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def rfc4514_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """Render ``getpeercert()["subject"]`` as an RFC 4514 string (last RDN first)."""
    rdns = []
    for rdn in reversed(subject):
        parts = [
            f"{RFC4514_ATTRIBUTE_NAMES.get(key, key)}={_escape_rfc4514(value)}"
            for key, value in rdn
        ]
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _escape_rfc4514(value: str) -> str:
    escaped = "".join("\\" + char if char in ',+"\\<>;=' else char for char in value)
    if escaped.startswith((" ", "#")):
        escaped = "\\" + escaped
    if escaped.endswith(" ") and not escaped.endswith("\\ "):
        escaped = escaped[:-1] + "\\ "
    return escaped


class ServerTLS:
    """A listener's SSL context plus what the ASGI ``tls`` extension needs from it.

    The context remembers its ``ServerTLS`` (attribute ``headrace_server_tls``), so a
    connection finds it from the transport alone: see :func:`connection_tls_extension`.
    """

    __slots__ = ("_cipher_numbers", "context", "options", "server_cert")

    def __init__(self, options: TLSOptions) -> None:
        self.options = options
        self.context = build_server_context(options)
        self.server_cert = first_pem_certificate(options.certfile)
        self._cipher_numbers = cipher_suite_numbers(self.context)
        setattr(self.context, _CONTEXT_ATTRIBUTE, self)

    def scope_extension(self, ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
        """The ``scope["extensions"]["tls"]`` dict for one finished handshake."""
        return tls_scope_extension(ssl_object, self.server_cert, self._cipher_numbers)


def tls_scope_extension(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    server_cert: str | None,
    cipher_numbers: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Build the ASGI ``tls`` extension for a connection (see the module docstring)."""
    extension: dict[str, Any] = {
        "server_cert": server_cert,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
    if ssl_object is None:
        return extension
    extension["client_cert_chain"] = _client_chain(ssl_object)
    extension["client_cert_name"] = _client_name(ssl_object)
    extension["tls_version"] = TLS_VERSION_NUMBERS.get(ssl_object.version() or "")
    extension["cipher_suite"] = _cipher_number(ssl_object, cipher_numbers)
    return extension


def _client_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[str]:
    unverified_chain = getattr(ssl_object, "get_unverified_chain", None)  # Python >= 3.13
    chain: Any = unverified_chain() if unverified_chain is not None else None
    if chain and all(isinstance(der, bytes) for der in chain):
        return [ssl.DER_cert_to_PEM_cert(der) for der in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [ssl.DER_cert_to_PEM_cert(leaf)] if leaf else []


def _client_name(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    details = ssl_object.getpeercert()
    if not details or "subject" not in details:
        return None
    subject: Any = details["subject"]
    return rfc4514_name(subject)


def _cipher_number(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, cipher_numbers: dict[str, int] | None
) -> int | None:
    cipher = ssl_object.cipher()
    if cipher is None:
        return None
    numbers = cipher_numbers if cipher_numbers is not None else {}
    return numbers.get(cipher[0])


def server_context(options: TLSOptions) -> ssl.SSLContext:
    """The SSL context for a listener; it carries what the ASGI ``tls`` extension needs."""
    return ServerTLS(options).context


def connection_tls_extension(transport: Any) -> dict[str, Any] | None:
    """``scope["extensions"]["tls"]`` for a connection's asyncio transport (None if not TLS)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    context = transport.get_extra_info("sslcontext")
    server_tls = getattr(context, _CONTEXT_ATTRIBUTE, None)
    if server_tls is not None:
        extension: dict[str, Any] = server_tls.scope_extension(ssl_object)
        return extension
    numbers = cipher_suite_numbers(context) if isinstance(context, ssl.SSLContext) else None
    return tls_scope_extension(ssl_object, None, numbers)
