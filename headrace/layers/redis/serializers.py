"""Message encoding for the Redis layers: msgpack or JSON, optionally encrypted.

A message dict becomes bytes once per send (or once per ``group_send``) and is decoded once per
delivery, so every receiver gets its own dict. With ``symmetric_encryption_keys`` the bytes are
Fernet tokens (AES-128-CBC + HMAC-SHA256, from ``cryptography``). Each configured key (any str or
bytes) is stretched with SHA-256 into a Fernet key, the same derivation channels_redis uses, so
keys carry over. Key rotation: the first key encrypts, every key is tried to decrypt, so a fleet
can roll a new key in front, then drop the old one once no process sends with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from headrace.exceptions import InvalidChannelLayerError
from headrace.layers.history import POSITION_KEY

__all__ = ["SERIALIZER_FORMATS", "MessageSerializer"]

SERIALIZER_FORMATS = ("msgpack", "json")

Encoder = Callable[[dict[str, Any]], bytes]
Decoder = Callable[[bytes], dict[str, Any]]


def _msgpack_codec() -> tuple[Encoder, Decoder]:
    try:
        import msgpack
    except ImportError as exc:  # pragma: no cover - msgpack ships with the [redis] extra
        raise InvalidChannelLayerError(
            "serializer_format='msgpack' needs the msgpack package (pip install headrace[redis])"
        ) from exc

    def encode(message: dict[str, Any]) -> bytes:
        data: bytes = msgpack.packb(message, use_bin_type=True)
        return data

    def decode(data: bytes) -> dict[str, Any]:
        message: dict[str, Any] = msgpack.unpackb(data, raw=False)
        return message

    return encode, decode


def _json_codec() -> tuple[Encoder, Decoder]:
    def encode(message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":")).encode()

    def decode(data: bytes) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(data)
        return message

    return encode, decode


def _fernet_key(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


class _Crypter:
    """First key encrypts, all keys decrypt (MultiFernet)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError as exc:
            raise InvalidChannelLayerError(
                "symmetric_encryption_keys needs the cryptography package "
                "(pip install headrace[crypto])"
            ) from exc
        self._fernet = MultiFernet([Fernet(_fernet_key(key)) for key in keys])

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        return self._fernet.decrypt(token)


def _check_keys(keys: object) -> list[str | bytes]:
    if isinstance(keys, str | bytes) or not isinstance(keys, list | tuple):
        raise InvalidChannelLayerError(
            "symmetric_encryption_keys must be a list of keys (str or bytes), "
            f"not {type(keys).__name__}"
        )
    if not keys:
        raise InvalidChannelLayerError("symmetric_encryption_keys must not be an empty list")
    for key in keys:
        if not isinstance(key, str | bytes) or not key:
            raise InvalidChannelLayerError(
                f"symmetric_encryption_keys entries must be non-empty str or bytes, not {key!r}"
            )
    return list(keys)


class MessageSerializer:
    """Turns message dicts into bytes and back, encrypting when keys are configured."""

    def __init__(
        self,
        serializer_format: str = "msgpack",
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
    ) -> None:
        if serializer_format == "msgpack":
            self._encode, self._decode = _msgpack_codec()
        elif serializer_format == "json":
            self._encode, self._decode = _json_codec()
        else:
            raise InvalidChannelLayerError(
                f"serializer_format must be one of {SERIALIZER_FORMATS}, not {serializer_format!r}"
            )
        self.format = serializer_format
        self._positioned: tuple[bytes, str, int, bytes] | None = None
        self._crypter = (
            _Crypter(_check_keys(symmetric_encryption_keys))
            if symmetric_encryption_keys is not None
            else None
        )

    @property
    def encrypted(self) -> bool:
        return self._crypter is not None

    def serialize(self, message: dict[str, Any]) -> bytes:
        data = self._encode(message)
        return self._crypter.encrypt(data) if self._crypter else data

    def deserialize(self, data: bytes) -> dict[str, Any]:
        if data[:1] == b"\0":
            return self._deserialize_positioned(data)
        if self._crypter:
            data = self._crypter.decrypt(data)
        return self._decode(data)

    def _deserialize_positioned(self, data: bytes) -> dict[str, Any]:
        """A group history copy, ``\\0<epoch>:<offset>\\0<payload>`` (see
        :mod:`headrace.layers.redis.group_scripts`): the message with its ``__position__``.
        Every member of a process gets the same bytes object, so the prefix is parsed once."""
        parsed = self._positioned
        if parsed is None or parsed[0] is not data:
            end = data.index(b"\0", 1)
            colon = data.rindex(b":", 1, end)
            epoch, offset = data[1:colon].decode(), int(data[colon + 1 : end])
            parsed = self._positioned = (data, epoch, offset, data[end + 1 :])
        _, epoch, offset, body = parsed
        message = self._decode(self._crypter.decrypt(body) if self._crypter else body)
        message[POSITION_KEY] = [epoch, offset]
        return message
