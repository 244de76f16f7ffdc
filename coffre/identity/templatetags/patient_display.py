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


@register.filter
def nir_display(nir: str | None) -> str:
    """A NIR grouped as on the carte Vitale: 2 85 03 75 056 123 06."""
    if not nir or len(nir) != 15:
        return nir or ""
    return " ".join((nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]))


@register.filter
def phone_display(phone: str | None) -> str:
    """A French number in its national form (06 12 34 56 78); others stay in E.164."""
    if phone and phone.startswith("+33") and len(phone) == 12:
        national = "0" + phone[3:]
        return " ".join(national[i:i + 2] for i in range(0, 10, 2))
    return phone or ""
