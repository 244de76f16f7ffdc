"""The PostgreSQL pass of the suite runs as an application role, as production does.

``COFFRE_DATABASE_URL`` names a superuser (CI: ``postgres@127.0.0.1``). The suite uses
it only where production uses a privileged role (docs/deploy.md): to create the
databases (pytest-django's test database, and each CLI test's own) and the role, to
run the migrations and the owner's commands (``coffre init``, ``backup``, ``restore``:
production's ``coffre_owner``), and for the harness's reset of the database between
transactional tests. Everything else (the tests' own connection, every other ``coffre``
command, the servers the tests start) connects as ``<test database>_app``: NOSUPERUSER,
NOBYPASSRLS, owning nothing, with the grants production gives its application role
(``coffre.tenancy.rls.app_role_grants``). Row-level security therefore binds every test.

A test that needs more says so by using ``admin_url`` (its own connection).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

from coffre import config

ADMIN_URL = config.database_url()  # what the run was given: a superuser
SUITE_CONNECTED = False  # the suite's connection is the application role's
_OWNER_SETTINGS: dict = {}  # the superuser's USER and PASSWORD, while it is


def _parts() -> tuple[str, str, str]:
    """(user, host[:port], query) of the superuser URL."""
    url = urlsplit(ADMIN_URL or "")
    host = url.hostname or ""
    if url.port:
        host = f"{host}:{url.port}"
    return url.username or "", host, f"?{url.query}" if url.query else ""


def admin_url(database: str = "postgres") -> str:
    """The superuser URL, to ``database``."""
    return ADMIN_URL.split("?")[0].rsplit("/", 1)[0] + f"/{database}" + _parts()[2]


def admin(database: str, *statements: str) -> None:
    """Run statements as the superuser in ``database``, each committed."""
    import psycopg

    with psycopg.connect(admin_url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@functools.cache
def app_role() -> tuple[str, str]:
    """(name, password) of this run's application role, created (or reset: attributes
    and a new password) once per process. Its name follows the test database's, so
    parallel runs on one server with different COFFRE_TEST_DATABASE_NAME never meet."""
    from django.conf import settings

    name = f"{settings.DATABASES['default']['TEST']['NAME']}_app"[:63]
    password = secrets.token_hex(16)
    attributes = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    admin("postgres", f"""DO $$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
            ALTER ROLE "{name}" {attributes} PASSWORD '{password}';
        ELSE
            CREATE ROLE "{name}" {attributes} PASSWORD '{password}';
        END IF; END $$""")
    return name, password


def app_url(database: str) -> str:
    """The application role's URL, to ``database``."""
    name, password = app_role()
    _user, host, query = _parts()
    return f"postgresql://{quote(name)}:{password}@{host}/{database}{query}"


def grant(database: str) -> None:
    """Production's grants to the application role, in ``database`` (before or after its
    tables exist: the superuser running the migrations stands for the owner role)."""
    from coffre.tenancy.rls import app_role_grants

    owner = _parts()[0] or "postgres"
    admin(database, *app_role_grants(database, app_role()[0], owner))


def drop_app_role() -> None:
    """At the end of the run; left in place (it owns nothing) if a database that a
    crashed test did not drop still grants it something."""
    if app_role.cache_info().currsize:
        with contextlib.suppress(Exception):
            admin("postgres", f'DROP ROLE IF EXISTS "{app_role()[0]}"')


def _flush_as_superuser(self, sql_list: list[str]) -> None:
    """The harness's reset between transactional tests (TRUNCATE, which ignores row-level
    security): not something the application does, nor may do, so it runs as the
    superuser, on a connection of its own."""
    import psycopg

    with psycopg.connect(admin_url(self.connection.settings_dict["NAME"])) as conn:
        for statement in sql_list:
            conn.execute(statement)


def _reconnect(settings: dict) -> None:
    """The suite's connection, closed, to open next as ``settings`` (USER, PASSWORD)."""
    from django.db import connections

    connection = connections["default"]
    connection.close()
    connection.close_pool()  # the pool keeps connections of the previous role
    connection.settings_dict.update(settings)


def suite_as_app_role() -> Callable[[], None]:
    """Once pytest-django has created and migrated the test database (as the
    superuser): grant the application role and make it the suite's connection. Returns
    what puts the superuser back (pytest-django drops the test database with it)."""
    from django.db import connections
    from django.db.backends.postgresql.operations import DatabaseOperations

    connection = connections["default"]
    grant(connection.settings_dict["NAME"])
    name, password = app_role()
    before = {key: connection.settings_dict.get(key) for key in ("USER", "PASSWORD")}
    flush = DatabaseOperations.execute_sql_flush

    def undo() -> None:
        global SUITE_CONNECTED
        SUITE_CONNECTED = False
        DatabaseOperations.execute_sql_flush = flush
        _reconnect(before)

    global SUITE_CONNECTED
    _OWNER_SETTINGS.update(before)
    _reconnect({"USER": name, "PASSWORD": password})
    DatabaseOperations.execute_sql_flush = _flush_as_superuser
    SUITE_CONNECTED = True
    return undo


@contextlib.contextmanager
def as_owner() -> Iterator[None]:
    """The suite's connection as the superuser for a block, where production uses its
    owner role (a test that runs migrations). On SQLite nothing changes."""
    if not SUITE_CONNECTED:
        yield
        return
    name, password = app_role()
    _reconnect(_OWNER_SETTINGS)
    try:
        yield
    finally:
        _reconnect({"USER": name, "PASSWORD": password})
