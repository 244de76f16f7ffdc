"""Fast multi-row INSERT for bulk imports and the access log, and a prepared UPDATE for
many rows, bypassing per-value ORM preparation.

Django's bulk_create prepares every value through its field (about 25 us a row for a
patient's 25 columns); sealed values are bytes that need no preparation, so only the
few other columns are prepared here. Runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from django.db import connection, models

_PASS_THROUGH = (models.BinaryField, models.IntegerField, models.CharField,
                 models.BooleanField)


@cache
def _statement(model: type[models.Model], vendor: str) -> tuple[str, tuple[models.Field, ...]]:
    fields = tuple(f for f in model._meta.concrete_fields
                   if not isinstance(f, models.AutoField | models.BigAutoField))
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    # Names come from the model; values are parameters.
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", fields  # noqa: S608


def bulk_insert(model: type[models.Model], rows: Sequence[dict]) -> None:
    """INSERT ``rows`` (dicts keyed by field attname; auto-increment ids are left out, a
    missing key takes the field's default)."""
    if not rows:
        return
    sql, fields = _statement(model, connection.vendor)
    prepare = [_preparer(f) for f in fields]
    names = [f.attname for f in fields]
    defaults = {f.attname: f.get_default() for f in fields}
    params = [[value if prep is None else prep(value)
               for value, prep in zip((row.get(n, defaults[n]) for n in names), prepare,
                                      strict=True)]
              for row in rows]
    with connection.cursor() as cursor:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)


def update_rows(model: type[models.Model], columns: Sequence[str],
                updates: Sequence[tuple[object, Sequence[object]]]) -> None:
    """One prepared ``UPDATE ... WHERE pk = %s`` run for many rows: ``updates`` holds
    (primary key, values of ``columns``), columns named by field name or attname. The
    ORM's bulk_update builds a CASE per column and row, which costs far more than the
    cryptography of the callers (re-encryption, result transitions)."""
    if not updates:
        return
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(c) for c in columns]
    pk = model._meta.pk
    prepare = [_preparer(f) for f in fields]
    # Table and column names come from the model, never from input; values are bound.
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"  # noqa: S608
    params = [[*(value if prep is None else prep(value)
                 for value, prep in zip(values, prepare, strict=True)),
               pk.get_db_prep_value(row_pk, connection)]
              for row_pk, values in updates]
    with connection.cursor() as cursor:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)


def _preparer(field: models.Field) -> Callable | None:
    """None when the value goes to the driver as is; else a memoised preparation
    (rows of one batch share their timestamps)."""
    if isinstance(field, _PASS_THROUGH) and not field.is_relation:
        return None
    if isinstance(field, models.UUIDField):
        return None if connection.features.has_native_uuid_field else (lambda v: v and v.hex)
    memo: dict = {}

    def prepare(value: object) -> object:
        if value not in memo:
            memo[value] = field.get_db_prep_save(value, connection)
        return memo[value]

    return prepare


def refresh_statistics() -> None:
    """Let the query planner see the tables as a bulk load left them. SQLite keeps no
    statistics until ANALYZE: without them it walks a whole lab's index for a query
    filtered by lab and patient (a FHIR Observation search took 496 ms instead of 54 ms
    at 20,000 patients). PostgreSQL's autovacuum would get there later; now is better."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
