"""Database connections across a fork: nothing that holds a socket or a thread (a
connection, the psycopg pool and its worker threads) may cross it. Used before
gunicorn forks its workers (coffre.serving.server) and before the breach scan forks
its helpers (coffre.identity.digests)."""

from __future__ import annotations


def release_connections() -> None:
    """Close this process's database connections and pools before forking."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()
