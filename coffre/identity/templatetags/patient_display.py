"""How the staff pages show a record's canonical values: a record holds ISO dates and
INS status codes; a secretary reads 14/03/1985 and "Identité provisoire"."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.formats import date_format

from coffre.identity.models import IdentityStatus

register = template.Library()


@register.filter
def short_date(value: str | None) -> str:
    """An ISO date in the page language's short form (14/03/1985 in French)."""
    try:
        return date_format(dt.date.fromisoformat(value or ""), "SHORT_DATE_FORMAT")
    except ValueError:
        return value or ""


@register.filter
def identity_status_label(code: str) -> str:
    """The RNIV name of an INS identity status code (PROV, RECUP, VALI, QUAL)."""
    try:
        return str(IdentityStatus(code).label)
    except ValueError:
        return code
