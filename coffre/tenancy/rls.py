"""PostgreSQL row-level security: the database's own check that a request reads and
writes only the labs it acts for, behind the scoped querysets of the access layers.

Each patient-data table (``TABLES``) has a policy comparing its ``lab_id`` with the
connection setting ``coffre.lab_scope``: a comma-separated list of lab ids, ``*`` for
every lab, and the empty string for none. The staff pages limit a request to the acting
lab (``accounts.acting.staff_view``), break-the-glass widens it to the group's labs
for that request, a patient's portal to their lab; the prescriber portal and the CLI
(an administrator on the server) see every lab. A connection that never set the scope
(migrations, management commands) is not limited.

Superusers bypass row-level security in PostgreSQL whatever the policy: production
must connect as a role that is neither superuser nor BYPASSRLS (docs/operations.md).
On SQLite these calls do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

SETTING = "coffre.lab_scope"
ALL = "*"
TABLES = ("identity_patient", "lab_order", "lab_specimen", "lab_result")

# CASE, not OR: PostgreSQL may evaluate both sides of an OR, and "*" is no integer.
POLICY = (
    "(CASE WHEN coalesce(current_setting('coffre.lab_scope', true), '*') = '*' THEN true "
    "ELSE lab_id = ANY (string_to_array(nullif(current_setting('coffre.lab_scope', true), "
    "''), ',')::integer[]) END)"
)


def enable_sql() -> list[str]:
    """The statements a migration runs (PostgreSQL only)."""
    statements = []
    for table in TABLES:
        statements += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
            f"CREATE POLICY lab_scope ON {table} USING {POLICY} WITH CHECK {POLICY}",
        ]
    return statements


def disable_sql() -> list[str]:
    statements = []
    for table in TABLES:
        statements += [f"DROP POLICY IF EXISTS lab_scope ON {table}",
                       f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
                       f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"]
    return statements


def app_role_grants(database: str, app_role: str, owner_role: str) -> list[str]:
    """What the application role may do in ``database``, whose tables ``owner_role``
    creates (docs/deploy.md runs these; so does the PostgreSQL pass of the test suite):
    read and write rows, nothing else. It owns no table, so it cannot turn row-level
    security off, truncate (which ignores the policies) or drop anything. Run as the
    owner or a superuser, inside ``database``; the default privileges reach the tables
    that later migrations (or a restore) create."""
    return [
        f'GRANT CONNECT ON DATABASE "{database}" TO "{app_role}"',
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f'GRANT USAGE ON SCHEMA public TO "{app_role}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{app_role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{app_role}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner_role}" IN SCHEMA public '
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{app_role}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner_role}" IN SCHEMA public '
        f'GRANT USAGE, SELECT ON SEQUENCES TO "{app_role}"',
    ]


def _set(value: str) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [SETTING, value])


def limit_to(lab_ids: Iterable[int]) -> None:
    """From now on this connection reaches these labs' rows only."""
    _set(",".join(str(int(lab_id)) for lab_id in sorted(set(lab_ids))))


def widen(lab_ids: Iterable[int]) -> None:
    """Add labs to a limited scope (break-the-glass); an unlimited one stays so."""
    scope = current()
    if scope is None or scope == ALL:
        return
    limit_to({int(i) for i in scope.split(",") if i} | {int(i) for i in lab_ids})


def open_all() -> None:
    """Every lab (the prescriber portal; the start of each web request)."""
    _set(ALL)


def current() -> str | None:
    """The connection's scope; None on SQLite or when never set."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting(%s, true)", [SETTING])
        return cursor.fetchone()[0]


class ScopeResetMiddleware:
    """A persistent connection must not carry one request's scope into the next."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        open_all()
        return self.get_response(request)
