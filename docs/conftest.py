"""The guide's examples as tests: pytest runs each page (``docs/*.rst``) as one doctest.

``setup.cfg`` collects them (``--doctest-glob=*.rst``, with ``docs`` among the
test paths), so the default ``python -m pytest`` runs them, and ``tox -e
docs`` runs them after the HTML build. Each page gets a time limit, and must
leave nothing behind: every ZeroMQ context it made is terminated (or
destroyed) by the page itself, and ``zmqchan_green.patch()`` is undone. A page
that fails to clean up fails. ``patch()`` is undone here, so the tests that
run after it are not affected; a context left open is left alone, because a
thread of the page (a proxy) may still be using its sockets, and destroying
them under it is not safe.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.green

import zmqchan_green

HERE = Path(__file__).resolve().parent

#: Seconds one page's examples may take, all together.
PAGE_TIMEOUT = 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent == HERE and item.path.suffix == ".rst":
            item.add_marker(pytest.mark.timeout(PAGE_TIMEOUT))


def _open_contexts() -> dict[int, zmq.Context]:
    return {
        id(obj): obj for obj in gc.get_objects() if isinstance(obj, zmq.Context) and not obj.closed
    }


@pytest.fixture(autouse=True)
def _page_cleans_up() -> Iterator[None]:
    socket_class = zmq.green.Context._socket_class
    before = set(_open_contexts())
    yield
    problems = []
    if zmq.green.Context._socket_class is not socket_class:
        zmqchan_green.unpatch()
        problems.append("zmqchan_green.patch() was left on")
    left = [ctx for key, ctx in _open_contexts().items() if key not in before]
    if left:
        problems.append(f"{len(left)} ZeroMQ context(s) left open")
    if problems:
        pytest.fail("the page did not clean up: " + "; ".join(problems))
