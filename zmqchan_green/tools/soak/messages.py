"""The soak's message format: ``[header, payload, checksum]``, and echoes of it.

The header holds the sender id, the generation of the sending pair and the
sequence number; the checksum is a BLAKE2b digest of header and payload. An
echo is ``[identity, header, payload, checksum, ROUTER generation]`` on the
ROUTER pair, and arrives on the DEALER pair without the identity. Payloads
come from a pool drawn once from the soak's seeded RNG.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

from ..._checks import Frame

__all__ = ["GEN", "HEADER", "Payloads", "unpack"]

#: sender id, generation of the sending pair, sequence number.
HEADER = struct.Struct(">IIQ")
#: Generation of the ROUTER pair that echoed a message (appended to echoes).
GEN = struct.Struct(">I")
_DIGEST_SIZE = 8
#: Payloads come from a seeded pool of this many, 0 to _MAX_PAYLOAD bytes long.
_POOL = 97
_MAX_PAYLOAD = 160


def _digest(header: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(header + payload, digest_size=_DIGEST_SIZE).digest()


class Payloads:
    """The payload pool, and the messages built from it."""

    __slots__ = ("_pool",)

    def __init__(self, rng: random.Random) -> None:
        pool_rng = random.Random(rng.getrandbits(64))
        self._pool = [pool_rng.randbytes(pool_rng.randint(0, _MAX_PAYLOAD)) for _ in range(_POOL)]

    def message(self, sid: int, gen: int, seq: int) -> list[Frame]:
        """Attempt ``seq`` of sender ``sid`` through sending pair ``gen``."""
        header = HEADER.pack(sid, gen, seq)
        payload = self._pool[(sid + seq) % _POOL]
        return [header, payload, _digest(header, payload)]


def unpack(frames: list[Any]) -> tuple[int, int, int] | str:
    """``(sender id, sending pair generation, sequence number)`` of a message, or
    what is wrong with it (wrong frame count, damaged or mixed-up frames)."""
    if len(frames) != 3:
        return f"message of {len(frames)} frame(s), expected 3"
    header, payload, digest = (bytes(f) for f in frames)
    if len(header) != HEADER.size or _digest(header, payload) != digest:
        return "checksum mismatch (frames damaged or mixed up)"
    sid, gen, seq = HEADER.unpack(header)
    return sid, gen, seq
