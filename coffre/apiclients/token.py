"""``POST /fhir/auth/token``: OAuth2 client credentials grant (RFC 6749 §4.4).

The client authenticates with HTTP Basic (preferred, §2.3.1) or with ``client_id`` and
``client_secret`` form fields; ``scope`` may narrow the client's scopes. Errors are the
RFC 6749 §5.2 JSON objects; nothing in an answer repeats a credential.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from coffre.apiclients import services
from coffre.apiclients.scopes import ScopeError
from coffre.serving.proxy import client_address

MAX_BODY = 4096


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}


def _answer(body: dict, status: int = 200, headers: dict[str, str] | None = None
            ) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"  # §5.1: a token must not sit in a cache
    response["Pragma"] = "no-cache"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_request", "the Basic credentials are not base64 of "
                         "client_id:client_secret") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError("invalid_request", "the Basic credentials must be "
                         "client_id:client_secret")
    # §2.3.1: both parts are form-urlencoded before base64.
    return unquote_plus(client_id), unquote_plus(secret)


def _credentials(request: HttpRequest) -> tuple[str, str, bool]:
    """(client id, secret, whether HTTP Basic was used)."""
    basic = _basic(request.headers.get("Authorization", ""))
    form_id, form_secret = request.POST.get("client_id"), request.POST.get("client_secret")
    if basic and form_secret:
        raise OAuthError("invalid_request", "authenticate the client one way only: HTTP "
                         "Basic or form fields, not both")
    if basic:
        return basic[0], basic[1], True
    if not form_id or not form_secret:
        raise OAuthError("invalid_client", "client authentication is required (HTTP Basic "
                         "or client_id and client_secret)", 401,
                         {"WWW-Authenticate": 'Basic realm="coffre-fhir"'})
    return form_id, form_secret, False


def _issue(request: HttpRequest) -> JsonResponse:
    if len(request.body) > MAX_BODY:
        raise OAuthError("invalid_request", "the request body is too large")
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as "
                         "application/x-www-form-urlencoded")
    grant = request.POST.get("grant_type", "")
    if grant != "client_credentials":
        raise OAuthError("unsupported_grant_type" if grant else "invalid_request",
                         "only grant_type=client_credentials is supported")
    client_id, secret, basic = _credentials(request)
    address = client_address(request)
    try:
        client = services.authenticate_client(client_id, secret, address)
        issued = services.issue_token(client, request.POST.get("scope"), address)
    except services.ClientLockedOut as exc:
        raise OAuthError("invalid_client", str(exc), 429,
                         {"Retry-After": str(exc.retry_after)}) from None
    except services.ClientAuthFailed:
        raise OAuthError("invalid_client", "unknown client, wrong secret or revoked client",
                         401, {"WWW-Authenticate": 'Basic realm="coffre-fhir"'} if basic
                         else {}) from None
    except services.Throttled as exc:
        raise OAuthError("slow_down", "too many tokens requested; reuse the token until it "
                         "expires", 429, {"Retry-After": str(exc.retry_after)}) from None
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    return _answer({"access_token": issued.access_token, "token_type": "bearer",
                    "expires_in": issued.expires_in, "scope": issued.scope})


@csrf_exempt
@never_cache
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    try:
        return _issue(request)
    except OAuthError as exc:
        return _answer({"error": exc.error, "error_description": exc.description},
                       exc.status, exc.headers)
