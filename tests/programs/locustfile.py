"""A distributed locust run that ends with the same request counts every time.

``-u`` users, each makes ``ZCG_REQUESTS`` GETs of ``/item`` and then stops
itself. The end is a handshake over locust's own RPC sockets:

1. a worker whose users have all finished sends ``zcg_done`` to the master;
2. once every expected worker is done, the master stops the test without
   telling the workers (so a worker that quits is not replaced by spreading
   its users over the others) and sends ``zcg_finish`` to all;
3. each worker then sends its last stats and quits, which sends locust's own
   ``quit`` message to the master; the master ends the run when the last
   worker has quit.

So the master exits only if every worker's ``quit`` reached it (a worker that
just vanishes is only marked missing, and the master keeps waiting), and no
``-t`` run time is needed. Lines that start with ``ZCG`` are for the tests.

With ``ZCG_DROPIN=1`` the drop-in is turned on here, at the top. Locust has
already run ``gevent.monkey.patch_all()`` when it imports a locustfile (in
``locust/__init__.py``), and it creates its ZeroMQ sockets only later, when
``main()`` makes the master or worker runner after loading the locustfile
(``locust/rpc/zmqrpc.py``); so this is the place for the line.
"""

from __future__ import annotations

import dropin  # beside this file: locust puts the locustfile's folder on sys.path

DROPIN = dropin.apply_if_requested()

import logging  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust import HttpUser, constant, events, task  # noqa: E402
from locust.exception import StopUser  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402

REQUESTS = int(os.environ.get("ZCG_REQUESTS", "25"))

logger = logging.getLogger("zcg")
finished_users = 0


class FixedUser(HttpUser):
    """Makes ``REQUESTS`` requests, then stops."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.made = 0

    @task
    def item(self) -> None:
        if self.made >= REQUESTS:
            global finished_users
            finished_users += 1
            raise StopUser()
        self.client.get("/item")
        self.made += 1


def rpc_socket(runner: Any) -> Any:
    """The ZeroMQ socket of a master's or a worker's RPC endpoint."""
    endpoint = getattr(runner, "server", None) or getattr(runner, "client", None)
    return getattr(endpoint, "socket", None)


# ------------------------------------------------------------------ worker


def _report_done(runner: WorkerRunner) -> None:
    while not (runner.target_user_count and finished_users >= runner.target_user_count):
        gevent.sleep(0.02)
    logger.info("ZCG worker done: %d users finished", finished_users)
    runner.send_message("zcg_done", {"users": finished_users})


def _finish(environment: Any, msg: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    logger.info("ZCG worker finishing: last stats, then quit")
    data: dict[str, Any] = {}
    environment.events.report_to_master.fire(client_id=runner.client_id, data=data)
    runner.send_message("stats", data)
    runner.quit()


# ------------------------------------------------------------------ master

done_workers: set[str] = set()


def _worker_done(environment: Any, msg: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    done_workers.add(msg.node_id)
    logger.info("ZCG master: %s done (%d of them)", msg.node_id, len(done_workers))
    if len(done_workers) == environment.parsed_options.expect_workers:
        runner.stop(send_stop_to_client=False)
        runner.send_message("zcg_finish")


@events.init.add_listener
def _on_init(environment: Any, runner: Any, **_kwargs: Any) -> None:
    logger.info("ZCG drop-in: %s", DROPIN or "off")
    cls = type(rpc_socket(runner))
    logger.info("ZCG socket class: %s.%s", cls.__module__, cls.__qualname__)
    if isinstance(runner, WorkerRunner):
        runner.register_message("zcg_finish", _finish, concurrent=True)
        gevent.spawn(_report_done, runner)
    elif isinstance(runner, MasterRunner):
        logger.info("ZCG master port: %d", runner.server.port)
        runner.register_message("zcg_done", _worker_done)
