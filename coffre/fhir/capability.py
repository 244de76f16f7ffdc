"""The CapabilityStatement (GET /fhir/metadata), from the route tables."""

from __future__ import annotations

from django.utils import timezone

from coffre.fhir.create import CREATORS
from coffre.fhir.resources import validate
from coffre.fhir.routes import FHIR_VERSION, READ_TYPES, search_params
from coffre.fhir.service import SEARCHERS

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _resource(resource_type: str) -> dict:
    interactions = ["read"]
    if resource_type in SEARCHERS:
        interactions.append("search-type")
    if resource_type in CREATORS:
        interactions.append("create")
    entry: dict = {"type": resource_type,
                   "interaction": [{"code": code} for code in interactions]}
    if resource_type in SEARCHERS:
        entry["searchParam"] = [{"name": p.name, "type": p.type, "documentation": p.doc}
                                for p in search_params(resource_type)
                                if not p.name.startswith("_")]
    return entry


def capability_statement(base: str) -> dict:
    return validate({
        "resourceType": "CapabilityStatement", "status": "active",
        "date": timezone.now().date().isoformat(), "kind": "instance",
        "software": {"name": "Coffre"},
        "implementation": {"description": "Coffre FHIR API", "url": base},
        "fhirVersion": FHIR_VERSION, "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR"}],
                    "text": "OAuth2 client credentials; bearer tokens with system/ scopes"}],
                "extension": [{"url": OAUTH_URIS, "extension": [
                    {"url": "token", "valueUri": f"{base}auth/token"}]}],
                "description": "POST client_id and client_secret (client credentials) to "
                               f"{base}auth/token; send 'Authorization: Bearer <token>'."},
            "resource": [_resource(t) for t in READ_TYPES],
            "interaction": [{"code": "transaction"}]}]})
