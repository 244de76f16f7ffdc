from django.http import HttpRequest

from coffre.audit.alerts import count_open
from coffre.tenancy.capabilities import held_by, may


def acting_lab(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    return {"acting_lab": membership.lab if membership else None,
            "acting_role": membership.get_role_display() if membership else ""}


def capabilities(request: HttpRequest) -> dict:
    """``may``: the acting role's capabilities, for the links a page shows
    (``{% if "lab.settings" in may %}``); the views and services check them again."""
    membership = getattr(request, "membership", None)
    return {"may": held_by(membership.role) if membership else frozenset()}


def alerts_badge(request: HttpRequest) -> dict:
    """The "Alertes" link and its count of open alerts, for those who review them."""
    membership = getattr(request, "membership", None)
    if not may(membership, "alert.review"):
        return {"reviews_alerts": False}
    return {"reviews_alerts": True, "open_alert_count": count_open(membership.lab_id)}
