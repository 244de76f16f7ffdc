"""Thin FHIR views: the door (coffre.fhir.api) authenticates and scopes, the functions of
coffre.fhir.service / coffre.fhir.create do the work, every answer is FHIR JSON.

One view per (resource type, interaction), built from the route tables of
coffre.fhir.routes, so each is wrapped with the scope it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from coffre.audit.detection import AccountLocked
from coffre.fhir import capability, create, openapi, service
from coffre.fhir.api import fhir_endpoint, require_scope
from coffre.fhir.outcome import FhirError, fhir_response, from_error, outcome
from coffre.labwork.sealing import TamperedRow, report_tampering
from coffre.serving.outage import is_outage
from coffre.tenancy.capabilities import NotAllowed

logger = logging.getLogger(__name__)
View = Callable[..., HttpResponse]


def base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir/")


def answers_fhir(view: View) -> View:
    """Turn the service's FhirError into an OperationOutcome; anything unexpected is a
    500 OperationOutcome whose message says nothing of the request (logged by type)."""
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except FhirError as error:
            return from_error(error)
        except (AccountLocked, NotAllowed):
            raise  # the door (coffre.fhir.api) answers these
        except TamperedRow as exc:  # a lab row changed outside Coffre: rolled back
            report_tampering(exc, request.actor.person)
            return outcome(500, "exception", "a result failed its integrity check; the "
                           "laboratory was alerted")
        except Exception as exc:  # never an HTML page nor a value echoed
            if is_outage(exc):
                raise  # a lost database: the outage middleware answers 503
            # The type only: an exception's message or traceback may hold a value.
            logger.error("FHIR request failed: %s", type(exc).__name__)
            return outcome(500, "exception", "internal error; the request was not applied")
    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _body(request: HttpRequest, expected: str) -> dict:
    return create.parse_body(request.META.get("CONTENT_TYPE", ""),
                             request.META.get("CONTENT_LENGTH"), request.read, expected)


def _method_not_allowed(allowed: str) -> HttpResponse:
    return outcome(405, "not-supported", f"this URL accepts {allowed}",
                   {"Allow": allowed})


def type_view(resource_type: str) -> View:
    """GET <Type>?params (search) and POST <Type> (create), as the tables allow."""
    searchable = resource_type in service.SEARCHERS
    creatable = resource_type in create.CREATORS

    @answers_fhir
    def search(request: HttpRequest) -> HttpResponse:
        return fhir_response(service.search(request.actor, resource_type,
                                            dict(request.GET.lists()), base_url(request),
                                            readable=request.api.readable()))

    @answers_fhir
    def post(request: HttpRequest) -> HttpResponse:
        resource = create.create(request.actor, resource_type, _body(request, resource_type))
        location = f"{base_url(request)}{resource_type}/{resource['id']}"
        return fhir_response(resource, 201, {"Location": location})

    read_view = fhir_endpoint(resource_type, "read")(search) if searchable else None
    write_view = fhir_endpoint(resource_type, "write")(post) if creatable else None
    allowed = ", ".join(m for m, v in (("GET", read_view), ("POST", write_view)) if v)

    @csrf_exempt
    def dispatch(request: HttpRequest) -> HttpResponse:
        if request.method == "GET" and read_view:
            return read_view(request)
        if request.method == "POST" and write_view:
            return write_view(request)
        return _method_not_allowed(allowed)

    dispatch.__name__ = f"{resource_type.lower()}_type"
    return dispatch


def instance_view(resource_type: str) -> View:
    @answers_fhir
    def read(request: HttpRequest, resource_id: str) -> HttpResponse:
        return fhir_response(service.read(request.actor, resource_type, resource_id,
                                          readable=request.api.readable()))

    read_view = fhir_endpoint(resource_type, "read")(read)

    @csrf_exempt
    def dispatch(request: HttpRequest, resource_id: str) -> HttpResponse:
        if request.method != "GET":
            return _method_not_allowed("GET")
        return read_view(request, resource_id)

    dispatch.__name__ = f"{resource_type.lower()}_instance"
    return dispatch


@answers_fhir
def _transaction(request: HttpRequest) -> HttpResponse:
    body = _body(request, "Bundle")
    for resource_type in set(create.transaction_types(body)):
        require_scope(request.api, resource_type, "write")
    return fhir_response(create.run_transaction(request.actor, body, base_url(request)))


_transaction_view = fhir_endpoint("*", "write")(_transaction)


@csrf_exempt
def root(request: HttpRequest) -> HttpResponse:
    """POST /fhir/: a transaction Bundle."""
    if request.method != "POST":
        return _method_not_allowed("POST")
    return _transaction_view(request)


@csrf_exempt
def metadata(request: HttpRequest) -> HttpResponse:
    """The CapabilityStatement: public, as FHIR asks (no data in it)."""
    if request.method != "GET":
        return _method_not_allowed("GET")
    return fhir_response(capability.capability_statement(base_url(request)))


@csrf_exempt
def openapi_json(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    return HttpResponse(openapi.document_json(base_url(request)),
                        content_type="application/json")


@csrf_exempt
def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /fhir/: an unknown resource type or interaction."""
    return outcome(404, "not-found", "unknown resource type or URL; GET /fhir/metadata "
                   "lists what this server offers")
