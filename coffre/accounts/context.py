from django.http import HttpRequest


def acting_lab(request: HttpRequest) -> dict:
    membership = getattr(request, "membership", None)
    return {"acting_lab": membership.lab if membership else None,
            "acting_role": membership.get_role_display() if membership else ""}
