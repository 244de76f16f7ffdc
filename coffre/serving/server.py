"""``coffre serve --production``: gunicorn run from Python (no separate config file).

Sizing, measured on the 2-core development machine (docs/deploy.md): Coffre's requests
spend most of their time waiting on PostgreSQL or in C code that releases the GIL
(AES-GCM, Argon2), so a few threads per worker serve more requests than more processes
would, for less memory. Workers = 2 x cores + 1 (capped at 9), 4 threads each; every
thread holds at most one database connection from its worker's pool.

The application is loaded after the fork, in each worker (``preload_app`` off): the
CLI has already set Django up and opened the database in this process to check the
master key, so nothing that holds a socket or a thread (database connections, the
psycopg pool and its worker threads, a Redis client) may cross the fork. The master
closes its connections before gunicorn starts and each worker opens its own. Keys in
memory do cross it, harmlessly: every nonce comes from os.urandom at the time of use,
never from a counter or a generator state copied into both processes.
"""

from __future__ import annotations

import os
import signal

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from coffre.connections import release_connections

MAX_WORKERS = 9
THREADS = 4
# A request that takes longer has hung (a PDF report takes well under a second).
TIMEOUT_SECONDS = 60
# After SIGTERM, requests in flight get this long to finish before workers are killed.
GRACEFUL_SECONDS = 25


def default_workers(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return min(2 * cores + 1, MAX_WORKERS)


def _post_fork(server, worker) -> None:
    # A forked worker inherits the master's handlers; gunicorn sets its own, and the
    # default SIGINT handler would print a traceback on Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CoffreServer(BaseApplication):
    def __init__(self, options: dict) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        try:
            from coffre.wsgi import application
        except SystemExit:
            # coffre.wsgi has said why (the key does not open the database). A load error
            # stops gunicorn instead of respawning workers that fail the same way.
            raise AppImportError("the application refused to start (see above)") from None
        return application


def options(host: str, port: int, workers: int | None, threads: int = THREADS) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": workers or default_workers(),
        "worker_class": "gthread",
        "threads": threads,
        "timeout": TIMEOUT_SECONDS,
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": 5,
        "preload_app": False,
        # Coffre's own request log (coffre.serving.logs) replaces gunicorn's access log:
        # it names the route, never the query string, and says who acted.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "coffre",
        # A restarted worker gets a fresh process now and then (memory fragmentation).
        "max_requests": 5000,
        "max_requests_jitter": 500,
        # Only the reverse proxy on this host may set X-Forwarded-* (settings decide
        # whether Django trusts them: COFFRE_BEHIND_PROXY).
        "forwarded_allow_ips": "127.0.0.1,::1",
        "post_fork": _post_fork,
        "control_socket_disable": True,
    }


def run(host: str, port: int, workers: int | None = None, threads: int = THREADS) -> None:
    """Serve in the foreground until SIGTERM or SIGINT (graceful: requests in flight end)."""
    release_connections()
    CoffreServer(options(host, port, workers, threads)).run()
