"""TensorBoard event files (scalars), written directly: TFRecord framing of Event protocol buffers.

No TensorBoard or protobuf install is needed to write them; `tensorboard --logdir RUN/tb` reads them.
Record: uint64 length, uint32 masked CRC-32C of the length, the bytes, uint32 masked CRC-32C of the bytes.
"""
from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli polynomial, reflected
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    c = crc32c(data)
    return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, body: bytes) -> bytes:
    """Event{wall_time = 1 (double, now), step = 2 (int64), <one of> body}."""
    return b"\x09" + struct.pack("<d", time.time()) + b"\x10" + _varint(step) + body


def _scalar(tag: str, value: float) -> bytes:
    """Summary.Value{tag = 1, simple_value = 2 (float)}."""
    return _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value)


class EventWriter:
    """Appends scalar events to RUN/tb/events.out.tfevents.<time>.<host>; one file per training session."""

    def __init__(self, folder: str | Path, start_step: int = 0):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"
        self.file = open(self.path, "ab")
        self._write(_event(0, _field(3, b"brain.Event:2")))  # file_version
        if start_step:  # SessionLog{status: START} (field 7): TensorBoard drops older events from step start + 1 on
            self._write(_event(start_step + 1, _field(7, b"\x08\x01")))

    def _write(self, record: bytes) -> None:
        header = struct.pack("<Q", len(record))
        self.file.write(header + _masked(header) + record + _masked(record))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One event with a Summary (field 5) of simple values."""
        summary = b"".join(_field(1, _scalar(k, float(v))) for k, v in values.items())
        self._write(_event(step, _field(5, summary)))
        self.file.flush()

    def close(self) -> None:
        self.file.close()
