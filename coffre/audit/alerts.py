"""Alerts for the data-protection officer: recorded, shown on the alerts page, mailed.

An alert names the account and counts or internal ids, never a patient value, so the
mail and the page leak nothing even if read by the wrong person.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from coffre.audit.log import open_text, record, seal_text
from coffre.audit.models import Alert
from coffre.tenancy.access import one_row
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import require

logger = logging.getLogger("coffre.audit")


def raise_alert(lab_id: int | None, kind: str, person: str, summary: str,
                patient_id: uuid.UUID | None = None) -> Alert:
    alert = Alert.objects.create(lab_id=lab_id, kind=kind, person=person, summary=summary,
                                 patient_id=patient_id)
    logger.warning("alert %s: %s in lab %s (%s)", kind, person, lab_id, summary)
    _mail_officers(alert)
    return alert


def raise_once(lab_id: int | None, kind: str, person: str, summary: str, *,
               within: dt.timedelta) -> Alert | None:
    """Raise unless the same kind of alert for the person is still open and recent."""
    recent = Alert.objects.filter(lab_id=lab_id, kind=kind, person=person,
                                  acknowledged_at__isnull=True,
                                  at__gte=timezone.now() - within)
    if recent.exists():
        return None
    return raise_alert(lab_id, kind, person, summary)


# Who the lab's data protection officers are is coffre.accounts' to say (registered by
# its ready()): the audit sits below the accounts and imports nothing of them.
_OFFICERS: list[Callable[[int | None], Iterable[str]]] = []


def officers_from(lookup: Callable[[int | None], Iterable[str]]) -> None:
    """``lookup(lab_id)``: the e-mail addresses an alert of that lab is sent to."""
    if lookup not in _OFFICERS:
        _OFFICERS.append(lookup)


def officers_emails(lab_id: int | None) -> list[str]:
    return sorted({email for lookup in _OFFICERS for email in lookup(lab_id)})


def _mail_officers(alert: Alert) -> None:
    recipients = officers_emails(alert.lab_id)
    if not recipients:
        return
    send_mail(subject=f"[Coffre] {alert.get_kind_display()}",
              message=(f"{alert.get_kind_display()}\n\nCompte : {alert.person}\n"
                       f"Détail : {alert.summary}\n\nConsultez la page des alertes de Coffre."),
              from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=recipients,
              fail_silently=True)


class CommentRequired(ValueError):
    """An alert is acknowledged with a written comment (what was checked, what was done)."""


def open_alerts(lab_id: int) -> list[Alert]:
    return list(Alert.objects.filter(lab_id=lab_id, acknowledged_at__isnull=True))


def access_alert(actor: Actor, alert_id: int | str, *, open_only: bool = False) -> Alert:
    """An alert of the actor's lab (still open with ``open_only``); RowNotFound else."""
    rows = Alert.objects.filter(lab_id=actor.lab_id)
    if open_only:
        rows = rows.filter(acknowledged_at__isnull=True)
    return one_row(rows, alert_id, "alert")


def count_open(lab_id: int) -> int:
    return Alert.objects.filter(lab_id=lab_id, acknowledged_at__isnull=True).count()


def acknowledged_alerts(lab_id: int, limit: int = 50) -> list[Alert]:
    return list(Alert.objects.filter(lab_id=lab_id, acknowledged_at__isnull=False)
                .order_by("-acknowledged_at")[:limit])


def comment_of(alert: Alert) -> str:
    return open_text(alert.comment, f"alert-comment-{alert.pk}")


def acknowledge(alert: Alert, by: Actor, comment: str) -> None:
    """Close an alert with a sealed comment; recorded in the access log."""
    require(by, "alert.acknowledge")
    if not comment.strip():
        raise CommentRequired("an alert is acknowledged with a comment")
    record(by, "acknowledge", [], kind="alert")
    alert.acknowledged_by = by.person
    alert.acknowledged_at = timezone.now()
    alert.comment = seal_text(comment.strip(), f"alert-comment-{alert.pk}")
    alert.save(update_fields=["acknowledged_by", "acknowledged_at", "comment"])
