"""Shared fixtures: a fresh green context per test, sockets on random ports or
unique inproc/ipc names, and pairs that are always closed with linger=0."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
import zmq.green as zmq

import zmqchan_green as zc

TRANSPORTS = ["inproc", "ipc", "tcp"]

#: The checkout's root: what child processes import the package from.
ROOT = Path(__file__).resolve().parent.parent


def repo_env(**extra: str) -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_python(*args: str, timeout: float = 50, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` from the checkout (extra environment in ``env``);
    output captured as text; ``TimeoutExpired`` if it hangs."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=repo_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def unique_endpoint(transport: str) -> str:
    """A fresh endpoint; tcp gets its port when bound."""
    name = uuid.uuid4().hex[:16]
    if transport == "inproc":
        return f"inproc://test-{name}"
    if transport == "ipc":
        return f"ipc://{os.path.join(tempfile.gettempdir(), f'zcg-{name}.sock')}"
    return "tcp://127.0.0.1"


def bind(sock: zmq.Socket, transport: str) -> str:
    """Bind ``sock`` on a fresh endpoint of ``transport`` and return it."""
    endpoint = unique_endpoint(transport)
    if transport == "tcp":
        port = sock.bind_to_random_port(endpoint)
        return f"{endpoint}:{port}"
    sock.bind(endpoint)
    return endpoint


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Yield to other greenlets until ``condition()`` holds; fail after ``timeout``."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.001)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def make_socket(ctx: zmq.Context) -> Callable[..., zmq.Socket]:
    """``make_socket(type, **options)``: a green socket with ``linger=0``."""

    def make(kind: int, **options: Any) -> zmq.Socket:
        sock = ctx.socket(kind)
        sock.linger = 0
        for name, value in options.items():
            setattr(sock, name, value)
        return sock

    return make


@pytest.fixture
def connected(
    make_socket: Callable[..., zmq.Socket],
) -> Callable[..., tuple[zmq.Socket, zmq.Socket]]:
    """``connected(bind_type, connect_type, transport="inproc", **opts)``."""

    def make(
        bind_type: int, connect_type: int, transport: str = "inproc", **options: Any
    ) -> tuple[zmq.Socket, zmq.Socket]:
        a = make_socket(bind_type, **options)
        b = make_socket(connect_type, **options)
        b.connect(bind(a, transport))
        return a, b

    return make


@pytest.fixture
def make_pair() -> Iterator[Callable[..., zc.ChannelPair]]:
    """``make_pair(socket, tx_size, rx_size, **kw)``; closed with linger 0 at the end."""
    made: list[zc.ChannelPair] = []

    def make(sock: zmq.Socket, *args: Any, **kwargs: Any) -> zc.ChannelPair:
        pair = zc.ChannelPair(sock, *args, **kwargs)
        made.append(pair)
        return pair

    yield make
    for pair in made:
        pair.close(linger=0)
