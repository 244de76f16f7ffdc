"""The one refusal of every ``access_<thing>(actor, id)`` helper.

Each lab-owned model has one service function that fetches a row within the actor's lab
or raises :class:`RowNotFound`; another lab's row, an unknown id and a malformed one
raise the same, so the answer never tells that a row exists elsewhere
(docs/architecture.md, "Reaching a lab's rows"). The older names (``PatientNotFound``,
``OrderNotFound``, ``SpecimenNotFound``, ...) are subclasses, kept for their callers.
"""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


class RowNotFound(LookupError):
    """No such row in the actor's lab: missing, malformed, or another lab's."""


def one_row(rows: QuerySet[M], row_id: object, what: str,
            refusal: type[RowNotFound] = RowNotFound) -> M:
    """The row of ``rows`` (a queryset already scoped to the actor's lab) with this
    primary key; ``refusal`` for none, whatever the reason (a malformed id included)."""
    try:
        row = rows.filter(pk=row_id).first()
    except (ValueError, TypeError, ValidationError):
        row = None
    if row is None:
        raise refusal(f"no such {what}")
    return row
