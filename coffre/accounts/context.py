from django.http import HttpRequest

from coffre.accounts.acting import ALERT_REVIEWERS
from coffre.audit.alerts import count_open


def acting_lab(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    return {"acting_lab": membership.lab if membership else None,
            "acting_role": membership.get_role_display() if membership else ""}


def alerts_badge(request: HttpRequest) -> dict:
    """The "Alertes" link and its count of open alerts, for those who review them."""
    membership = getattr(request, "membership", None)
    if membership is None or membership.role not in ALERT_REVIEWERS:
        return {"reviews_alerts": False}
    return {"reviews_alerts": True, "open_alert_count": count_open(membership.lab_id)}
