"""Gunicorn configuration: ``examples/gateway.py``'s app under ``gunicorn -k gevent``.

Run from anywhere, with the package installed (or the checkout on PYTHONPATH):
    ZCG_BACKEND=tcp://127.0.0.1:5555 gunicorn -k gevent -c examples/gunicorn.conf.py

Each worker process gets its own ZeroMQ context, socket and ``Requester``,
made by :func:`post_worker_init` after the fork: a ZeroMQ context must never
cross a fork, and the pair's pump must live in the worker's own gevent hub
(``post_fork`` would be too early: the gevent worker monkey-patches and
re-initialises its hub after that hook). :func:`worker_exit` closes them.

Settings come from the environment, as for ``gateway.py``: ``ZCG_BACKEND``,
``ZCG_MODE``, ``ZCG_TIMEOUT``, ``ZCG_CURVE_SERVER_KEY``, ``ZCG_CURVE_CLIENT_KEY``;
plus ``ZCG_LISTEN`` (the address to bind, default 127.0.0.1:8000) and
``ZCG_WORKERS`` (worker processes, default 2). The master process never
imports the gateway, so it never creates a context or monkey-patches itself.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))

wsgi_app = "gateway:app"
pythonpath = _HERE
worker_class = "gevent"
bind = [os.environ.get("ZCG_LISTEN", "127.0.0.1:8000")]
workers = int(os.environ.get("ZCG_WORKERS", "2"))
worker_connections = 1000
# Per-request access logs would cost more than the gateway's own work.
accesslog = None
# No control socket, so several gateways may run side by side (gunicorn >= 25.1;
# older ones ignore the setting).
control_socket_disable = True


def _gateway() -> Any:
    # Imported in the worker only: gateway.py monkey-patches on import.
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import gateway

    return gateway


def post_worker_init(worker: Any) -> None:
    """In each worker, after the fork and the app's import: connect to the backend."""
    gateway = _gateway()
    settings = gateway.settings_from_env()
    gateway.app.start(settings)
    worker.log.info("gateway (%s) connected to %s", settings.mode, settings.backend)


def worker_exit(server: Any, worker: Any) -> None:
    """In each worker, as it exits: close the backend connection and the context."""
    if "gateway" in sys.modules:
        sys.modules["gateway"].app.stop()
