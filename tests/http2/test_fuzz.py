"""Property tests: arbitrary bytes never crash the HTTP/2 protocol or make it hang."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.server.protocols.http2 import PREFACE, H2Protocol, H2Settings

from .test_protocol import Recorder

SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    length = len(payload)
    head = struct.pack(">BHBBL", length >> 16, length & 0xFFFF, kind, flags, stream_id)
    return head + payload


frames = st.builds(
    frame,
    st.integers(0, 12),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1]),
    st.binary(max_size=64),
)


def run(chunks: list[bytes]) -> H2Protocol:
    recorder = Recorder()
    protocol = H2Protocol(recorder, H2Settings(control_frame_burst=50))
    protocol.initiate()
    for chunk in chunks:
        protocol.receive_data(chunk)
        assert isinstance(protocol.data_to_send(), bytes)
    return protocol


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, max_size=20), st.integers(1, 50))
def test_random_frames_are_handled(frame_list: list[bytes], split: int) -> None:
    data = PREFACE + SETTINGS_FRAME + b"".join(frame_list)
    chunks = [data[index : index + split] for index in range(0, len(data), split)]
    protocol = run(chunks)
    if protocol.terminated:
        protocol.receive_data(b"more bytes after the end")
        assert protocol.data_to_send() == b""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_after_preface(data: bytes) -> None:
    run([PREFACE, SETTINGS_FRAME, data])
