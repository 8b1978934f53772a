"""The soak's message format: ``[header, payload frame..., checksum]``, and echoes of it.

The header holds the sender id, the generation of the sending pair, the
sequence number and how many payload frames follow; the checksum is a BLAKE2b
digest of the header and of every payload frame with its length, so a message
whose frames do not all come, in order, from one attempt fails it. Payloads
come from a pool drawn once from the soak's seeded RNG; a lane may split
them over several frames (see :meth:`~.lanes.Lane.frames`), the number
following from the sender and sequence number. An echo is ``[identity,
*message, ROUTER generation]`` on the ROUTER pair, and arrives on the DEALER
pair without the identity.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any

from ..._checks import Frame

__all__ = ["GEN", "HEADER", "Payloads", "unpack"]

#: sender id, generation of the sending pair, sequence number, payload frames.
HEADER = struct.Struct(">IIQH")
#: Generation of the ROUTER pair that echoed a message (appended to echoes).
GEN = struct.Struct(">I")
_DIGEST_SIZE = 8
#: Payloads come from a seeded pool of this many, 0 to _MAX_PAYLOAD bytes long.
_POOL = 97
_MAX_PAYLOAD = 160


def _digest(header: bytes, chunks: list[bytes]) -> bytes:
    body = b"".join(len(c).to_bytes(2, "big") + c for c in chunks)
    return hashlib.blake2b(header + body, digest_size=_DIGEST_SIZE).digest()


class Payloads:
    """The payload pool, and the messages built from it."""

    __slots__ = ("_pool",)

    def __init__(self, rng: random.Random) -> None:
        pool_rng = random.Random(rng.getrandbits(64))
        self._pool = [pool_rng.randbytes(pool_rng.randint(0, _MAX_PAYLOAD)) for _ in range(_POOL)]

    def message(
        self, sid: int, gen: int, seq: int, frames: tuple[int, int] = (1, 1)
    ) -> list[Frame]:
        """Attempt ``seq`` of sender ``sid`` through sending pair ``gen``, its payload
        in ``frames[0]`` to ``frames[1]`` frames."""
        payload = self._pool[(sid + seq) % _POOL]
        low, high = frames
        n = low + (sid * 7 + seq) % (high - low + 1)
        chunks = [payload[len(payload) * i // n : len(payload) * (i + 1) // n] for i in range(n)]
        header = HEADER.pack(sid, gen, seq, n)
        return [header, *chunks, _digest(header, chunks)]


def unpack(frames: list[Any]) -> tuple[int, int, int] | str:
    """``(sender id, sending pair generation, sequence number)`` of a message, or
    what is wrong with it (frames missing or extra, damaged or mixed up)."""
    if len(frames) < 3:
        return f"message of {len(frames)} frame(s), expected at least 3"
    header = bytes(frames[0])
    if len(header) != HEADER.size:
        return "checksum mismatch (no header: frames damaged or mixed up)"
    sid, gen, seq, n = HEADER.unpack(header)
    if len(frames) != n + 2:
        return f"message of {len(frames)} frame(s), its header says {n + 2}"
    if _digest(header, [bytes(f) for f in frames[1:-1]]) != bytes(frames[-1]):
        return "checksum mismatch (frames damaged or mixed up)"
    return sid, gen, seq
