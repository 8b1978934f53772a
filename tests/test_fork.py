"""Fork (DESIGN.md hazard 15): a pair belongs to the process that made it.

A child that inherits a pair must never touch its socket (libzmq sockets may not
be used across a fork; reading ``EVENTS`` there answers ``EINTR``, which pyzmq
retries forever) and must use no CPU for it; every call raises
``ChannelBroken``, whose cause says why. The parent goes on as if nothing
happened, and the child makes pairs of its own on a new context.

Each scenario runs in a fresh interpreter, so the forks never copy pytest's own
state; the child reports what it saw as JSON on a pipe.
"""

from __future__ import annotations

import ast
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, repo_env, run_python

pytestmark = pytest.mark.timeout(60)

SCENARIO = r"""
import json, os, signal, sys, time
import gevent, gevent.os
import zmq.green as zmq
import zmqchan_green as zc

how = sys.argv[1]
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.linger = 0
port = pull.bind_to_random_port("tcp://127.0.0.1")
push = ctx.socket(zmq.PUSH); push.linger = 0
push.connect("tcp://127.0.0.1:%d" % port)
rx = zc.ChannelPair(pull, 0, 8)
tx = zc.ChannelPair(push, 8)
port_ = rx.for_threads()  # a thread gate too
for i in range(5):
    tx.send([b"before", b"%d" % i])
assert rx.recv(timeout=5) == [b"before", b"0"]
gevent.sleep(0.05)  # the rest sits in rx's buffer, read by the parent's pump
idle_sock = ctx.socket(zmq.PULL); idle_sock.linger = 0
idle = zc.ChannelPair(idle_sock)
blocked = gevent.spawn(idle.recv)  # a greenlet waiting when the fork happens
blocked_tx = gevent.spawn(tx.send, [b"x"] * 2)
gevent.sleep(0)

def child():
    out = {}
    start = os.times()
    gevent.sleep(2.0)  # idle, with the inherited pairs' timers and watchers around
    end = os.times()
    out["cpu"] = (end.user + end.system) - (start.user + start.system)
    out["closed"] = [rx.closed, tx.closed]
    calls = {
        "send": lambda: tx.send(b"x", timeout=1),
        "send_nowait": lambda: tx.send_nowait(b"x"),
        "recv": lambda: rx.recv(timeout=1),
        "recv_nowait": rx.recv_nowait,
        "call": lambda: tx.call(lambda s: 1),
        "iterate": lambda: list(rx),
    }
    for name, fn in calls.items():
        try:
            fn()
            out[name] = "no error"
        except zc.ChannelBroken as exc:
            out[name] = "fork" if "fork" in str(exc.__cause__) else repr(exc.__cause__)
        except Exception as exc:
            out[name] = repr(exc)
    out["blocked"] = repr(blocked.exception) if blocked.ready() else "still blocked"
    t0 = time.monotonic()
    out["close"] = [rx.close(), tx.close(linger=-1), idle.close()]
    out["close_seconds"] = time.monotonic() - t0
    # New pairs on a new context work.
    ctx2 = zmq.Context()
    a = ctx2.socket(zmq.PAIR); a.linger = 0
    a.bind("inproc://child")
    b = ctx2.socket(zmq.PAIR); b.linger = 0
    b.connect("inproc://child")
    with zc.ChannelPair(a) as pa, zc.ChannelPair(b) as pb:
        pa.send([b"child", b"ok"])
        out["new_pair"] = [f.decode() for f in pb.recv(timeout=5)]
    ctx2.term()
    return out

r, w = os.pipe()
if how == "os":
    pid = os.fork()
    if pid == 0:
        gevent.reinit()
elif how == "gevent":
    pid = gevent.fork()
if pid == 0:
    signal.alarm(30)  # a child that spins is killed, not left behind
    os.close(r)
    try:
        result = child()
    except BaseException as exc:
        result = {"error": repr(exc)}
    os.write(w, json.dumps(result).encode())
    os._exit(0)

os.close(w)
# The parent is unaffected, while the child idles.
for i in range(5):
    tx.send([b"after", b"%d" % i])
got = [rx.recv(timeout=5) for _ in range(10)]
data = b""
while True:
    chunk = gevent.os.read(r, 65536)
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
child_result = json.loads(data)
child_result["parent_got"] = [[f.decode() for f in m] for m in got]
child_result["status"] = status
child_result["parent_blocked"] = "still blocked" if not blocked.ready() else repr(blocked.exception)
rx.close(); tx.close(); idle.close(); ctx.term()
print(json.dumps(child_result))
"""


@pytest.mark.parametrize("how", ["os", "gevent"])
def test_child_of_a_fork_never_touches_inherited_pairs(how):
    proc = run_python("-c", SCENARIO, how)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["status"] == 0
    assert result["cpu"] < 0.5, f"the child spun: {result['cpu']:.2f} s of CPU in 2 s"
    assert result["closed"] == [True, True]
    for name in ("send", "send_nowait", "recv", "recv_nowait", "call", "iterate"):
        assert result[name] == "fork", (name, result[name])
    assert "ChannelBroken" in result["blocked"]
    assert result["close"] == [[], [], []]
    assert result["close_seconds"] < 1
    assert result["new_pair"] == ["child", "ok"]
    # The parent still has every message, the ones from before the fork included.
    expected = [["before", str(i)] for i in range(1, 5)] + [["x", "x"]]
    expected += [["after", str(i)] for i in range(5)]
    assert sorted(result["parent_got"]) == sorted(expected)
    assert result["parent_blocked"] == "still blocked"  # the parent's pair is untouched


MULTIPROCESSING = r"""
import multiprocessing, os
import gevent
import zmq.green as zmq
import zmqchan_green as zc

def work(q):
    start = os.times()
    gevent.sleep(1.0)
    end = os.times()
    try:
        pair.send(b"x")
        q.put("no error")
    except zc.ChannelBroken as exc:
        q.put(("fork" in str(exc.__cause__), end.user + end.system - start.user - start.system))

ctx = zmq.Context()
sock = ctx.socket(zmq.PUSH); sock.linger = 0
pair = zc.ChannelPair(sock, 4)
q = multiprocessing.get_context("fork").Queue()
p = multiprocessing.get_context("fork").Process(target=work, args=(q,))
p.start()
print(q.get(timeout=20))
p.join(20)
pair.send(b"still mine")
print(pair.close(linger=0))
ctx.term()
"""


def test_multiprocessing_child_sees_a_broken_pair():
    proc = run_python("-c", MULTIPROCESSING)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.strip().splitlines()[-2:]
    inherited, cpu = ast.literal_eval(first)
    assert inherited is True
    assert cpu < 0.5
    assert second == "[[b'still mine']]"


APP = """
import os
import zmq.green as zmq
import zmqchan_green as zc

# Made at import time, in the master, before the workers are forked.
_ctx = zmq.Context()
_sock = _ctx.socket(zmq.PUSH)
_sock.linger = 0
PRELOADED = zc.ChannelPair(_sock, 4)


def app(environ, start_response):
    # A pair made in the worker, after the fork, on its own context.
    ctx = zmq.Context()
    a = ctx.socket(zmq.PAIR); a.linger = 0
    a.bind("inproc://w")
    b = ctx.socket(zmq.PAIR); b.linger = 0
    b.connect("inproc://w")
    with zc.ChannelPair(a) as pa, zc.ChannelPair(b) as pb:
        pa.send(b"pid %d" % os.getpid())
        body = pb.recv(timeout=5)[0]
    ctx.term()
    try:
        PRELOADED.send(b"x", timeout=1)
        inherited = b"usable"
    except zc.ChannelBroken as exc:
        inherited = b"broken: fork" if "fork" in str(exc.__cause__) else b"broken"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body + b"; " + inherited]
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_gunicorn_preload_workers_serve_and_do_not_spin(tmp_path):
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed (pip install gunicorn to run this test)")
    try:
        __import__("gunicorn.workers.ggevent")
    except RuntimeError as exc:  # e.g. a gunicorn newer than the installed gevent
        pytest.skip(f"gunicorn's gevent worker cannot run here: {exc}")
    (tmp_path / "preload_app.py").write_text(APP)
    sock_path = tmp_path / "gunicorn.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "--preload",
            "-w",
            "2",
            "-b",
            f"unix:{sock_path}",
            "--chdir",
            str(tmp_path),
            "preload_app:app",
        ],
        cwd=ROOT,
        env=repo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            len(_children(proc.pid)) < 2 or not sock_path.exists()
        ):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) == 2
        bodies = set()
        for _ in range(10):
            bodies.add(_get(sock_path))
        assert all(body.endswith("; broken: fork") for body in bodies), bodies
        assert all(body.startswith("pid ") for body in bodies), bodies
        before = {pid: _cpu_seconds(pid) for pid in workers}
        time.sleep(2.0)  # measuring: the workers idle
        spent = {pid: _cpu_seconds(pid) - before[pid] for pid in workers}
        assert all(cpu < 0.5 for cpu in spent.values()), f"a worker spun: {spent}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def _get(sock_path: Path) -> str:
    """``GET /`` over the unix socket; the body."""

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(20)
            self.sock.connect(str(sock_path))

    conn = UnixConnection("localhost")
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


FORK_IN_CALL = r"""
import json, os, signal, time
import gevent
import zmq.green as zmq
import zmqchan_green as zc

ctx = zmq.Context()
a = ctx.socket(zmq.PAIR); a.linger = 0
a.bind("inproc://fork-in-call")
b = ctx.socket(zmq.PAIR); b.linger = 0
b.connect("inproc://fork-in-call")
pa, pb = zc.ChannelPair(a), zc.ChannelPair(b)
pid = pa.call(lambda s: os.fork())
if pid == 0:
    signal.alarm(20)  # a child that spins is killed, not left behind
    gevent.reinit()
    start = os.times()
    gevent.sleep(1.0)
    end = os.times()
    cpu = (end.user + end.system) - (start.user + start.system)
    try:
        pa.send(b"x", timeout=1)
        outcome = "no error"
    except zc.ChannelBroken as exc:
        outcome = "fork" if "fork" in str(exc.__cause__) else repr(exc.__cause__)
    print(json.dumps({"child_cpu": cpu, "child_send": outcome, "closed": pa.closed}), flush=True)
    os._exit(0)
pa.send([b"parent", b"ok"])
got = pb.recv(timeout=5)
_, status = os.waitpid(pid, 0)
pa.close(); pb.close(); ctx.term()
print(json.dumps({"parent_got": [f.decode() for f in got], "status": status}))
"""


def test_a_fork_inside_call_leaves_the_child_quiet():
    proc = run_python("-c", FORK_IN_CALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    child = next(line for line in lines if "child_cpu" in line)
    parent = next(line for line in lines if "parent_got" in line)
    assert child["child_cpu"] < 0.5, f"the child spun: {child['child_cpu']:.2f} s of CPU in 1 s"
    assert child["child_send"] == "fork"
    assert child["closed"] is True
    assert parent == {"parent_got": ["parent", "ok"], "status": 0}
