"""The door of the FHIR API: bearer token, scopes, rate limit, lab scope, locks.

Every FHIR view is wrapped in ``fhir_endpoint(resource, access)``. Like ``staff_view``
for the web pages, it sets ``request.actor`` (channel "api", person ``api:<client_id>``,
role ``api_client``) so the views call the same access layers, which scope every query to
the client's lab and record every read; PostgreSQL row-level security is limited to that
lab too. Refusals are OperationOutcomes that never echo the token.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from coffre.apiclients import services
from coffre.apiclients.scopes import RESOURCE_TYPES
from coffre.apiclients.services import ApiPrincipal
from coffre.audit.detection import AccountLocked, ensure_not_locked
from coffre.fhir.outcome import FhirError, outcome
from coffre.serving.proxy import client_address
from coffre.tenancy import rls
from coffre.tenancy.capabilities import NotAllowed

__all__ = ["ApiPrincipal", "ApiRefused", "fhir_endpoint", "require_scope"]

View = Callable[..., HttpResponse]
CHALLENGE = 'Bearer realm="coffre-fhir"'


class ApiRefused(FhirError):
    """A FhirError that also sets response headers (WWW-Authenticate, Retry-After)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message)
        self.headers = headers or {}


def _unauthorized(message: str, error: str = "invalid_token") -> ApiRefused:
    return ApiRefused(401, "login", message,
                      {"WWW-Authenticate": f'{CHALLENGE}, error="{error}"'})


def bearer_token(request: HttpRequest) -> str:
    """The bearer token; a request without one gets the bare challenge (RFC 6750 §3.1:
    no error code when no credentials were sent), a web session counts for nothing."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise ApiRefused(401, "login", "an access token is required: send "
                         "'Authorization: Bearer <token>' (POST /fhir/auth/token gives one)",
                         {"WWW-Authenticate": CHALLENGE})
    if not token.strip():
        raise _unauthorized("the Authorization header holds no token after 'Bearer'")
    return token.strip()


def authenticate(request: HttpRequest) -> ApiPrincipal:
    try:
        return services.authenticate_token(bearer_token(request))
    except services.TokenRejected as exc:
        raise _unauthorized(str(exc)) from None


def require_scope(principal: ApiPrincipal, resource: str, access: str) -> None:
    """For views that touch several types (a transaction Bundle): check each one."""
    if not principal.allows(resource, access):
        raise ApiRefused(403, "forbidden", f"the token's scopes do not allow {access} on "
                         f"{resource} (needs system/{resource}.{access})",
                         {"WWW-Authenticate": f'{CHALLENGE}, error="insufficient_scope"'})


def _throttle(principal: ApiPrincipal) -> None:
    try:
        services.throttle(principal)
    except services.Throttled as exc:
        raise ApiRefused(429, "throttled", "too many requests for this token; retry after "
                         f"{exc.retry_after} seconds",
                         {"Retry-After": str(exc.retry_after)}) from None


def _refusal(error: FhirError) -> HttpResponse:
    return outcome(error.status, error.code, error.message, getattr(error, "headers", None))


LOCKED = ("this API client is locked after unusual reading; a lab manager must unlock it "
          "(alerts page)")


def fhir_endpoint(resource: str, access: str) -> Callable[[View], View]:
    """Wrap a FHIR view: valid token, a scope allowing ``access`` ("read"/"write") on
    ``resource`` (a FHIR type, or "*" for any valid token), the per-token rate limit,
    then ``request.api`` / ``request.actor`` set, the database limited to the client's
    lab, and the mass-reading lock honoured before and during the view."""
    if access not in ("read", "write"):
        raise ValueError(f"access must be read or write, not {access!r}")
    if resource != "*" and resource not in RESOURCE_TYPES:
        raise ValueError(f"unknown FHIR resource type {resource!r}")

    def decorator(view: View) -> View:
        @csrf_exempt
        @never_cache
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                principal = authenticate(request)
                require_scope(principal, resource, access)
                _throttle(principal)
                request.api = principal
                request.actor = principal.actor(client_address(request))
                rls.limit_to([principal.lab_id])  # the database's own check (PostgreSQL)
                ensure_not_locked(request.actor)
                return view(request, *args, **kwargs)
            except AccountLocked:
                return outcome(403, "forbidden", LOCKED)
            except NotAllowed:
                return outcome(403, "forbidden", "API clients may not do this")
            except FhirError as error:
                return _refusal(error)

        return wrapper

    return decorator
