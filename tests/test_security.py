"""CURVE with pyzmq's own ZAP authenticator, under gevent, through pairs:
an authorised client is served, an unknown one is refused."""

from __future__ import annotations

import textwrap

import pytest

from .conftest import run_python

pytestmark = pytest.mark.timeout(60)

SCENARIO = textwrap.dedent(
    """
    {patch}
    import os, shutil, tempfile
    import gevent
    import zmq.auth as zauth
    import zmq.green as zmq
    from zmq.auth.thread import ThreadAuthenticator
    import zmqchan_green as zc

    top = tempfile.mkdtemp()
    keys, allowed = os.path.join(top, "keys"), os.path.join(top, "allowed")
    os.makedirs(keys)
    os.makedirs(allowed)
    server_public, server_secret = zauth.create_certificates(keys, "server")
    client_public, client_secret = zauth.create_certificates(keys, "client")
    _, stranger_secret = zauth.create_certificates(keys, "stranger")
    shutil.copy(client_public, allowed)

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=allowed)

    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_publickey, router.curve_secretkey = zauth.load_certificate(server_secret)
    router.curve_server = True
    port = router.bind_to_random_port("tcp://127.0.0.1")
    server = zc.ChannelPair(router, 8, 8)
    echo = gevent.spawn(lambda: [server.send(m) for m in server])

    def ask(secret_file):
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.curve_publickey, dealer.curve_secretkey = zauth.load_certificate(secret_file)
        dealer.curve_serverkey = zauth.load_certificate(server_public)[0]
        dealer.connect("tcp://127.0.0.1:%d" % port)
        with zc.ChannelPair(dealer) as client:
            client.send([b"", b"hello"], timeout=5)
            try:
                return client.recv(timeout=1.0)
            except TimeoutError:
                return None

    assert ask(client_secret) == [b"", b"hello"], "the authorised client was not served"
    assert ask(stranger_secret) is None, "an unknown client was served"
    assert server.stats()["received"] == 1
    server.close(linger=0)
    echo.join(5)
    auth.stop()
    ctx.term()
    print("OK")
    """
)


@pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "patch_all"])
def test_curve_with_pyzmq_authenticator(patched):
    patch = "from gevent import monkey; monkey.patch_all()" if patched else ""
    proc = run_python("-c", SCENARIO.format(patch=patch))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


SHARED_SCENARIO = textwrap.dedent(
    """
    import os, tempfile
    import gevent
    import zmq.auth as zauth
    import zmq.green as zmq
    from zmq.auth.thread import ThreadAuthenticator
    import zmqchan_green as zc

    zc.patch()
    top = tempfile.mkdtemp()
    keys = os.path.join(top, "keys")
    os.makedirs(keys)
    server_public, server_secret = zauth.create_certificates(keys, "server")
    client_public, client_secret = zauth.create_certificates(keys, "client")

    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=zauth.CURVE_ALLOW_ANY)

    router = ctx.socket(zmq.ROUTER)
    assert isinstance(router, zc.SharedSocket)
    router.linger = 0
    router.curve_publickey, router.curve_secretkey = zauth.load_certificate(server_secret)
    router.curve_server = True
    port = router.bind_to_random_port("tcp://127.0.0.1")

    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.curve_publickey, dealer.curve_secretkey = zauth.load_certificate(client_secret)
    dealer.curve_serverkey = zauth.load_certificate(server_public)[0]
    dealer.connect("tcp://127.0.0.1:%d" % port)
    dealer.send_multipart([b"a", b"b"])
    frames = router.recv_multipart(copy=False)
    assert [f.more for f in frames] == [True, True, False], [f.more for f in frames]
    assert frames[1].bytes == b"a"
    user = frames[-1].get("User-Id")
    expected = zauth.load_certificate(client_public)[0].decode()
    assert user == expected, (user, expected)
    assert frames[-1].get("Peer-Address") == "127.0.0.1"
    router.close(); dealer.close()
    auth.stop()
    ctx.term()
    print("OK")
    """
)


def test_shared_socket_frames_carry_the_curve_user_id():
    """A CURVE server on a SharedSocket knows its client as on pyzmq: the
    ``User-Id`` that ZAP gave the connection is on every ``copy=False`` frame."""
    proc = run_python("-c", SHARED_SCENARIO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")
