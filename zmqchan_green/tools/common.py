"""What the tools share: argument types, fresh endpoints, real threads and locks,
process memory, JSON files."""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import zmq
from gevent.monkey import get_original

__all__ = [
    "RealThread",
    "bind_fresh",
    "int_at_least",
    "positive",
    "proc_status_kib",
    "real_lock",
    "write_json",
]

_Number = TypeVar("_Number", int, float)


# ------------------------------------------------------------ argument types


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def positive(kind: Callable[[str], _Number]) -> Callable[[str], _Number]:
    """An argparse type: a number of type ``kind`` (``int`` or ``float``) above 0."""

    def parse(text: str) -> _Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


# ------------------------------------------------------------ endpoints


def bind_fresh(sock: zmq.Socket[Any], transport: str, name: str) -> str:
    """Bind ``sock`` on a fresh endpoint and return it.

    ``tcp``: 127.0.0.1 on a random port; ``inproc``: ``inproc://NAME-<random hex>``,
    unique in the process.
    """
    if transport == "tcp":
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        return f"tcp://127.0.0.1:{port}"
    if transport == "inproc":
        endpoint = f"inproc://{name}-{uuid.uuid4().hex}"
        sock.bind(endpoint)
        return endpoint
    raise ValueError(f"unknown transport {transport!r}")


# ------------------------------------------------------------ real threads and locks

#: ``threading.Thread`` as it was before any ``gevent.monkey.patch_all()``: an OS
#: thread, whatever the process patched (a watchdog must run while the hub is stuck).
RealThread: Any = get_original("threading", "Thread")
#: ``_thread.allocate_lock`` before any patching: a lock that OS threads and the hub share.
real_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")


# ------------------------------------------------------------ process memory


def proc_status_kib(field: str) -> int | None:
    """A ``kB`` figure of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB.

    ``None`` where the file or the field is missing (not Linux). The standard
    library has no call for the *current* resident set size
    (``resource.getrusage`` reports only the peak), so both figures come from
    this one reader.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


# ------------------------------------------------------------ output


def write_json(path: str, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` as indented JSON with a final newline."""
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
