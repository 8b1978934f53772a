"""pytest plugin: run pyzmq's green test classes with every green socket shared.

Loaded with ``-p tests.pyzmq_suite.plugin`` (``run.py`` does this). With
``--dropin-mode=patched`` (the default) it calls ``zmqchan_green.patch()`` at
configure time, so every socket a ``zmq.green.Context`` creates is a
``SharedSocket``; ``--dropin-mode=plain`` leaves zmq.green alone (the
baseline).

In patched mode, the tests listed in :data:`EXPECTED_FAILURES` are marked as
strict expected failures, each with its reason: they test what a
``SharedSocket`` deliberately does differently. If one starts passing, the
run fails, so the list never goes stale.

Only the green test classes run: those deriving from pyzmq's ``GreenTest``
mixin (in ``zmq_test_utils``). Everything else collected is deselected, and
the counts per module and class are printed, so nothing is dropped silently;
a collected module that yields no green test at all (gevent missing, the
suite reshaped) is an error.

Each test is bounded (pytest-timeout's alarm repeats until the test ends, so
a tearDown that blocks again is interrupted too), a greenlet that dies of an
error fails a test that would otherwise pass, and a test whose tearDown could
not terminate ``zmq.green.Context.instance()`` does not hand its sockets to
the next test: the instance is dropped and listed at the end.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import gevent
import gevent.monkey
import pytest

import zmqchan_green

#: Name of pyzmq's mixin that makes a test class green.
GREEN_MIXIN = "GreenTest"

_how_key = pytest.StashKey[str]()
_leaks_key = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dropin", "zmqchan_green drop-in run of pyzmq's green tests")
    group.addoption(
        "--dropin-mode",
        choices=("patched", "plain"),
        default="patched",
        help="patched: every zmq.green socket is a SharedSocket (default); plain: baseline",
    )


#: pyzmq tests that a SharedSocket fails on purpose, by test id, with the reason.
EXPECTED_FAILURES = {
    "test_socket.py::TestSocketGreen::test_warn_get_timeo": (
        "zmq.green warns that RCVTIMEO/SNDTIMEO have no effect; on a SharedSocket they "
        "work, so there is no warning"
    ),
    "test_socket.py::TestSocketGreen::test_warn_set_timeo": (
        "zmq.green warns that RCVTIMEO/SNDTIMEO have no effect; on a SharedSocket they "
        "work, so there is no warning"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "flaky: pyzmq's mark for retried tests (no rerun here)")
    config.addinivalue_line("markers", "large: pyzmq's mark for tests using a lot of memory")
    mode = config.getoption("--dropin-mode")
    how = "none: plain zmq.green sockets (baseline)"
    if mode == "patched":
        how = "zmqchan_green.patch()"
        zmqchan_green.patch()
        config.add_cleanup(zmqchan_green.unpatch)
    config.stash[_how_key] = how


def pytest_report_header(config: pytest.Config) -> list[str]:
    import zmq

    return [
        f"dropin: mode={config.getoption('--dropin-mode')}; sockets patched by: "
        f"{config.stash[_how_key]}",
        f"dropin: pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"gevent {gevent.__version__}, zmqchan_green {zmqchan_green.__version__}; "
        f"gevent monkey-patching: {sorted(gevent.monkey.saved) or 'none'}",
    ]


def _is_green(item: pytest.Item) -> bool:
    cls = getattr(item, "cls", None)
    return cls is not None and any(base.__name__ == GREEN_MIXIN for base in cls.__mro__)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    per_module: Counter[str] = Counter()
    green_per_class: Counter[str] = Counter()
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    odd_names: set[str] = set()
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        per_module[module] += 0
        if _is_green(item):
            kept.append(item)
            per_module[module] += 1
            green_per_class[item.nodeid.rsplit("::", 1)[0]] += 1
            if not item.cls.__name__.endswith("Green"):
                odd_names.add(item.cls.__name__)
        else:
            dropped.append(item)
    lines = ["dropin selection (classes deriving from pyzmq's GreenTest):"]
    lines += [f"  {name}: {count} tests" for name, count in sorted(green_per_class.items())]
    lines.append(
        f"  total: {len(kept)} green tests selected, {len(dropped)} non-green deselected "
        f"of {len(items)} collected"
    )
    if odd_names:
        lines.append(f"  note: green classes not named *Green: {sorted(odd_names)}")
    empty = sorted(module for module, count in per_module.items() if count == 0)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)
    if empty:
        raise pytest.UsageError(
            f"no green test classes collected from {empty}: is gevent importable? "
            "(pyzmq defines them only when it is)"
        )
    if config.getoption("--dropin-mode") == "patched":
        for item in kept:
            reason = EXPECTED_FAILURES.get(item.nodeid.rsplit("/", 1)[-1])
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    items[:] = kept
    if dropped:
        config.hook.pytest_deselected(items=dropped)


#: Seconds between repeated SIGALRMs once a test has timed out.
REPEAT_ALARM = 5.0


class GreenletDied(AssertionError):
    """A greenlet died of an error the test never looked at."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Run one test call bounded, and let no greenlet error pass unseen.

    pytest-timeout's SIGALRM is one-shot: it ends the test body, but the
    tearDown that follows (closing sockets, ``Context.term()``, a context
    manager's ``destroy()``) can block again, in C, where nothing else would
    interrupt it. So the alarm repeats every :data:`REPEAT_ALARM` seconds
    until the call ends (for unittest classes setUp and tearDown run inside
    the call, so stopping the timer then loses nothing).

    A greenlet that dies of an exception is only printed by gevent; a test
    that spawned it (``test_wakeup`` spawns ``poller.poll``) passes anyway.
    Such an error fails a test that would otherwise pass.
    """
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    rearmed = remaining > 0 and callable(signal.getsignal(signal.SIGALRM))
    if rearmed:
        signal.setitimer(signal.ITIMER_REAL, remaining, REPEAT_ALARM)
    hub = gevent.get_hub()
    died: list[str] = []

    def handle_error(context: Any, kind: Any, value: Any, tb: Any) -> None:
        if kind is not None and not issubclass(kind, hub.NOT_ERROR):
            died.append(f"{context!r} died: {kind.__name__}: {value}")
        original(context, kind, value, tb)

    original = hub.handle_error
    hub.handle_error = handle_error
    try:
        result = yield
    finally:
        del hub.handle_error
        if rearmed:
            signal.setitimer(signal.ITIMER_REAL, 0)
    if died:
        # Reported only if the test otherwise passed (unittest failures come first).
        raise GreenletDied("greenlet error(s) during the test:\n  " + "\n  ".join(died))
    return result


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Keep one test's failure from failing the next: pyzmq's green tearDown
    terminates ``zmq.green.Context.instance()``; if that did not happen (it
    timed out, or a test broke it), the next test would get the same context
    and its leftover sockets. Drop it, and say so at the end."""
    from zmq.green import Context

    ctx = Context._instance
    if ctx is not None and not ctx.closed:
        Context._instance = None
        item.config.stash.setdefault(_leaks_key, []).append(
            f"{item.nodeid}: left zmq.green.Context.instance() open "
            f"({len(ctx._sockets)} sockets); dropped it"
        )


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    leaks = config.stash.get(_leaks_key, [])
    if leaks:
        terminalreporter.section("dropin: contexts left open")
        for line in leaks:
            terminalreporter.write_line(line)
