"""zerorpc used as its documentation shows, to be run as a script.

Everything runs in this one gevent process, over tcp on 127.0.0.1 with ports
the system picks: a ``Server`` and a ``Client`` (ROUTER and DEALER), a
``Publisher`` and a ``Subscriber`` (PUB and SUB), a ``Pusher`` and a
``Puller`` (PUSH and PULL). Steps, each with fresh objects and a deadline:

``calls``     many greenlets calling at once through one client (the point of
              sharing a socket), every answer checked against its question;
``heartbeat`` a call that lasts several heartbeat periods, while other
              greenlets keep calling;
``stream``    several ``@zerorpc.stream`` responses read at once, each longer
              than zerorpc's flow-control window;
``pubsub``    numbered events from a ``Publisher``, all received in order;
``pushpull``  events pushed from several greenlets, every one received once.

After its body each step closes what it made, each ``close()`` under its own
deadline. The last line of output is a JSON summary: each step and each close
is ``"ok"`` or the failure, plus the class of every ZeroMQ socket zerorpc
made. Exit status 0 only if everything is ``"ok"``.

With ``ZCG_DROPIN=1`` the drop-in is turned on first, before zerorpc is
imported.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dropin

DROPIN = dropin.apply_if_requested()

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import zerorpc  # noqa: E402
import zmq  # noqa: E402

#: Seconds a zerorpc call may take; a step's deadline; a close()'s deadline.
CALL_TIMEOUT = float(os.environ.get("ZCG_CALL_TIMEOUT", "10"))
STEP_TIMEOUT = float(os.environ.get("ZCG_STEP_TIMEOUT", "30"))
CLOSE_TIMEOUT = float(os.environ.get("ZCG_CLOSE_TIMEOUT", "5"))
#: zerorpc's heartbeat period (its default is 5 s): a stall of twice this
#: loses the remote, so not too short for a busy machine.
HEARTBEAT = 2.0

results: dict[str, str] = {}
socket_classes: dict[str, str] = {}


class Service:
    def echo(self, value: Any) -> Any:
        return value

    def add(self, a: int, b: int) -> int:
        return a + b

    def slow_echo(self, value: Any, seconds: float) -> Any:
        gevent.sleep(seconds)
        return value

    @zerorpc.stream
    def count(self, start: int, n: int) -> Iterator[int]:
        return iter(range(start, start + n))


class Collector:
    """Methods for a ``Subscriber`` or a ``Puller``: records what arrives."""

    def __init__(self) -> None:
        self.hello = 0
        self.got: list[tuple[int, int]] = []

    def ping(self) -> None:
        self.hello += 1

    def item(self, who: int, n: int) -> None:
        self.got.append((who, n))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.005)


def zmq_socket(obj: Any) -> Any:
    """The ZeroMQ socket under a zerorpc object (zerorpc keeps it in ``_events``)."""
    return obj._events._socket


def bound(obj: Any, name: str) -> str:
    """Bind ``obj`` on a free port of 127.0.0.1; returns the endpoint."""
    obj.bind("tcp://127.0.0.1:*")
    sock = zmq_socket(obj)
    socket_classes[name] = f"{type(sock).__module__}.{type(sock).__qualname__}"
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def connected(obj: Any, name: str, endpoint: str) -> Any:
    obj.connect(endpoint)
    sock = zmq_socket(obj)
    socket_classes[name] = f"{type(sock).__module__}.{type(sock).__qualname__}"
    return obj


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Step:
    """Runs one step under its deadline, then stops its greenlets and closes
    what it made."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.to_close: list[tuple[str, Any]] = []
        self.tasks: list[gevent.Greenlet] = []

    def own(self, label: str, obj: Any) -> Any:
        self.to_close.append((label, obj))
        return obj

    def run(self, body: Callable[[Step], None]) -> None:
        started = time.monotonic()
        try:
            with gevent.Timeout(STEP_TIMEOUT, AssertionError(f"step over {STEP_TIMEOUT} s")):
                body(self)
            results[self.name] = "ok"
        except BaseException as exc:
            results[self.name] = failure(exc)
            print(f"--- step {self.name} failed", file=sys.stderr)
            traceback.print_exc()
        gevent.killall(self.tasks, block=False)
        gevent.joinall(self.tasks, timeout=CLOSE_TIMEOUT)
        alive = [task for task in self.tasks if not task.dead]
        key = f"{self.name}: greenlets killed"
        results[key] = f"{len(alive)} still running after {CLOSE_TIMEOUT} s" if alive else "ok"
        for label, obj in reversed(self.to_close):
            key = f"{self.name}: {label}.close()"
            try:
                with gevent.Timeout(CLOSE_TIMEOUT, AssertionError(f"hung over {CLOSE_TIMEOUT} s")):
                    obj.close()
                results[key] = "ok"
            except BaseException as exc:
                results[key] = failure(exc)
                print(f"--- {key} failed", file=sys.stderr)
                traceback.print_exc()
        print(f"step {self.name}: {time.monotonic() - started:.2f} s", file=sys.stderr)


def server_and_client(step: Step) -> Any:
    server = step.own("server", zerorpc.Server(Service(), heartbeat=HEARTBEAT))
    endpoint = bound(server, "Server (ROUTER)")
    step.tasks.append(gevent.spawn(server.run))
    client = zerorpc.Client(timeout=CALL_TIMEOUT, heartbeat=HEARTBEAT)
    return connected(step.own("client", client), "Client (DEALER)", endpoint)


def calls(step: Step) -> None:
    client = server_and_client(step)
    greenlets, each = 40, 10

    def caller(g: int) -> int:
        for i in range(each):
            value = {"greenlet": g, "i": i, "payload": "x" * (g * 7 + i)}
            assert client.echo(value) == value, f"greenlet {g} call {i}: wrong echo"
            assert client.add(g, i) == g + i, f"greenlet {g} call {i}: wrong sum"
            if i % 3 == 0:
                assert client.slow_echo([g, i], 0.01) == [g, i]
        return each

    workers = [gevent.spawn(caller, g) for g in range(greenlets)]
    step.tasks.extend(workers)
    gevent.joinall(workers, raise_error=True)
    assert sum(w.value for w in workers) == greenlets * each


def heartbeat(step: Step) -> None:
    client = server_and_client(step)
    slow = gevent.spawn(client.slow_echo, "slow", 2.5 * HEARTBEAT)
    step.tasks.append(slow)
    fast = 0
    while not slow.ready():
        assert client.add(fast, 1) == fast + 1
        fast += 1
        gevent.sleep(0.05)
    assert slow.get() == "slow"
    assert fast > 0


def stream(step: Step) -> None:
    client = server_and_client(step)
    n = 250  # more than zerorpc's window of 100 events: flow control must work

    def reader(start: int) -> None:
        got = list(client.count(start, n))
        assert got == list(range(start, start + n)), f"stream from {start}: wrong items"

    readers = [gevent.spawn(reader, k * 1000) for k in range(6)]
    step.tasks.extend(readers)
    gevent.joinall(readers, raise_error=True)


def pubsub(step: Step) -> None:
    collector = Collector()
    subscriber = step.own("subscriber", zerorpc.Subscriber(collector))
    endpoint = bound(subscriber, "Subscriber (SUB)")
    step.tasks.append(gevent.spawn(subscriber.run))
    publisher = step.own("publisher", zerorpc.Publisher())
    connected(publisher, "Publisher (PUB)", endpoint)

    # PUB drops what it sends before the subscription reaches it: say hello
    # until one gets through, then send the numbered events.
    deadline = time.monotonic() + STEP_TIMEOUT
    while not collector.hello:
        assert time.monotonic() < deadline, "no event reached the subscriber"
        publisher.ping()
        gevent.sleep(0.02)
    n = 300
    for i in range(n):
        publisher.item(0, i)
    wait_until(lambda: len(collector.got) >= n, f"{n} published events")
    assert collector.got == [(0, i) for i in range(n)], "published events lost or out of order"


def pushpull(step: Step) -> None:
    collector = Collector()
    puller = step.own("puller", zerorpc.Puller(collector))
    endpoint = bound(puller, "Puller (PULL)")
    step.tasks.append(gevent.spawn(puller.run))
    pusher = step.own("pusher", zerorpc.Pusher())
    connected(pusher, "Pusher (PUSH)", endpoint)
    senders, each = 10, 50

    def send(who: int) -> None:
        for n in range(each):
            pusher.item(who, n)

    sending = [gevent.spawn(send, w) for w in range(senders)]
    step.tasks.extend(sending)
    gevent.joinall(sending, raise_error=True)
    wait_until(lambda: len(collector.got) >= senders * each, "every pushed event")
    assert sorted(collector.got) == [(w, n) for w in range(senders) for n in range(each)]


STEPS = {
    "calls": calls,
    "heartbeat": heartbeat,
    "stream": stream,
    "pubsub": pubsub,
    "pushpull": pushpull,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(f"drop-in: {DROPIN or 'off'}", file=sys.stderr)
    for name in argv or list(STEPS):
        Step(name).run(STEPS[name])
    ok = all(value == "ok" for value in results.values())
    summary = {"dropin": DROPIN, "ok": ok, "results": results, "sockets": socket_classes}
    print(json.dumps(summary), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
