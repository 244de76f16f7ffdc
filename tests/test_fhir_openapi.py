"""The OpenAPI description matches what is served (both ways), and a hypothesis fuzz run
drawn from it: no server error, every error an OperationOutcome, and refused requests
write nothing.

The fuzz run draws a new seed each time and prints it; a failure names it with the
command that replays the same run (COFFRE_FUZZ_SEED=N), and Hypothesis prints the
@reproduce_failure decorator that replays the one failing request."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets

import pytest
from django.urls import URLPattern
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from coffre.fhir import urls as fhir_urls
from coffre.fhir.create import CREATORS
from coffre.fhir.routes import search_params
from coffre.fhir.service import SEARCHERS, check_params
from coffre.identity.models import Patient
from coffre.labwork.models import Order, Result, Specimen
from tests.api_helpers import api_token, bearer
from tests.lab_helpers import order_for, published

FHIR = "application/fhir+json"
pytestmark = pytest.mark.django_db


def served_paths() -> dict[str, set[str]]:
    """OpenAPI path -> HTTP methods, from the URL patterns and the views' tables."""
    found: dict[str, set[str]] = {}
    for pattern in fhir_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name == "fhir_unknown":
            continue
        route = re.sub(r"<str:resource_id>", "{id}", str(pattern.pattern))
        path = f"/fhir/{route}"
        kind = route.split("/")[0]
        if pattern.name == "fhir_root":
            methods = {"post"}
        elif route.endswith("{id}") or route in ("metadata", "openapi.json"):
            methods = {"get"}
        else:
            methods = ({"get"} if kind in SEARCHERS else set()) | (
                {"post"} if kind in CREATORS else set())
        found[path] = methods
    return found


def test_every_url_is_described_and_every_description_served(client):
    document = json.loads(client.get("/fhir/openapi.json").content)
    described = {path: set(ops) for path, ops in document["paths"].items()}
    assert described == served_paths()


def test_search_parameters_match_both_ways(client):
    document = json.loads(client.get("/fhir/openapi.json").content)
    statement = json.loads(client.get("/fhir/metadata").content)
    capability = {r["type"]: {p["name"] for p in r.get("searchParam", [])}
                  for r in statement["rest"][0]["resource"]}
    for resource_type in SEARCHERS:
        operation = document["paths"][f"/fhir/{resource_type}"]["get"]
        described = {p["name"] for p in operation["parameters"]}
        served = {p.name for p in search_params(resource_type)}
        assert described == served, resource_type
        assert capability[resource_type] == {n for n in served if not n.startswith("_")}
        # The view's own check accepts every described name and refuses any other.
        assert set(check_params(resource_type, {n: ["1"] for n in described})) == described
        with pytest.raises(Exception, match="unknown search parameter"):
            check_params(resource_type, {"undescribed": ["1"]})


# --- fuzz -------------------------------------------------------------------------------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(max_size=30))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)
TEXT = st.text(max_size=40)


def _mutate(body: dict, data) -> object:
    """The example body, left valid or broken in one of several ways."""
    choice = data.draw(st.integers(0, 6))
    mutated = copy.deepcopy(body)
    if choice == 1 and mutated:
        mutated.pop(data.draw(st.sampled_from(sorted(mutated))))
    elif choice == 2:
        mutated[data.draw(st.sampled_from(sorted(mutated)))] = data.draw(JSON_VALUES)
    elif choice == 3:
        mutated["resourceType"] = data.draw(st.sampled_from(
            ["Observation", "Bundle", "Patient", "", "Nope"]))
    elif choice == 4:
        return data.draw(JSON_VALUES)
    elif choice == 5:
        mutated[data.draw(st.text(min_size=1, max_size=10))] = data.draw(JSON_VALUES)
    return mutated


class Fuzzer:
    def __init__(self, client, token, document, ids):
        self.client, self.token, self.document, self.ids = client, token, document, ids
        self.requests = 0

    def param_value(self, name: str, data) -> str:
        known = {
            "patient": [self.ids["patient"], f"Patient/{self.ids['patient']}"],
            "subject": [f"Patient/{self.ids['patient']}"],
            "code": ["2823-3", "http://loinc.org|2823-3", "NFS", "http://loinc.org|11502-2"],
            "date": ["ge2020-01-01", "le2999", "2026-11", "gt2020-01-01T00:00:00+01:00"],
            "status": ["final", "registered,amended", "partial", "cancelled"],
            "identifier": ["285037505612306"], "family": ["Martin"], "name": ["Lefèvre"],
            "birthdate": ["1985-03-14"], "telecom": ["phone|0612345678"],
            "email": ["claire.lefevre@example.fr"], "phone": ["06 12 34 56 78"],
            "_count": ["0", "1", "2", "500"], "_offset": ["0", "1", "99999999"],
        }.get(name, [])
        return data.draw(st.one_of(st.sampled_from(known), TEXT) if known else TEXT)

    def request(self, data):
        path = data.draw(st.sampled_from(sorted(self.document["paths"])))
        operations = self.document["paths"][path]
        method = data.draw(st.sampled_from(sorted(operations)))
        operation = operations[method]
        url = path
        if "{id}" in path:
            kind = path.split("/")[2]
            url = path.replace("{id}", data.draw(st.one_of(
                st.sampled_from(self.ids.get(kind, ["x"])),
                st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                               blacklist_characters="/?#%"),
                        min_size=1, max_size=40))))
        kwargs = bearer(self.token)
        if method == "get":
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            chosen = data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True)
                               if names else st.just([]))
            params = {n: self.param_value(n, data) for n in chosen}
            if data.draw(st.integers(0, 9)) == 0:
                params[data.draw(st.text(min_size=1, max_size=8))] = "x"
            return self.send("get", url, params, **kwargs)
        example = operation["requestBody"]["content"][FHIR]["example"]
        body = _mutate(example, data)
        if isinstance(body, dict) and body.get("resourceType") == "ServiceRequest":
            # the lab's real patient, so that valid orders are created too
            body["subject"] = {"reference": f"Patient/{self.ids['patient']}"}
        content_type = data.draw(st.sampled_from([FHIR] * 6 + ["application/json",
                                                               "text/plain", "application/xml"]))
        raw = json.dumps(body) if data.draw(st.integers(0, 9)) else data.draw(TEXT)
        return self.send("post", url, raw, content_type=content_type, **kwargs)

    def send(self, method, url, payload, **kwargs):
        self.requests += 1
        return getattr(self.client, method)(url, payload, **kwargs)


def _rows() -> tuple[int, ...]:
    return (Patient.unscoped.count(), Order.unscoped.count(), Result.unscoped.count(),
            Specimen.unscoped.count())


def test_fuzz_from_the_openapi_description(client, lab_a, staff, patient, monkeypatch):
    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "1000000")
    order = published(staff, patient.id, K="4.4", CREA="80")
    order_for(staff.secretary, patient.id, "NA")
    token = api_token(lab_a)
    document = json.loads(client.get("/fhir/openapi.json").content)
    ids = {"patient": str(patient.id), "Patient": [str(patient.id)],
           "ServiceRequest": [str(order.id)], "DiagnosticReport": [str(order.id)],
           "Observation": [str(r.id) for r in order.results.all()],
           "Specimen": [str(s.id) for s in order.specimens.all()],
           "Practitioner": ["10003456786"], "Organization": [lab_a.finess]}
    fuzzer = Fuzzer(client, token, document, ids)
    statuses: dict[int, int] = {}
    fuzz_seed = int(os.environ.get("COFFRE_FUZZ_SEED") or secrets.randbits(32))
    print(f"\nFHIR fuzz seed {fuzz_seed}")

    @seed(fuzz_seed)
    @settings(max_examples=1100, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        before = _rows()
        response = fuzzer.request(data)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.content[:300]
        if response.status_code == 200 and response["Content-Type"] == "application/json":
            return  # the OpenAPI document itself
        body = json.loads(response.content)
        get_fhir_model_class(body["resourceType"]).model_validate(body)
        if response.status_code >= 400:
            assert body["resourceType"] == "OperationOutcome"
            assert _rows() == before, "a refused request wrote rows"

    try:
        one()
    except BaseException as failure:
        failure.add_note(f"replay this fuzz run: COFFRE_FUZZ_SEED={fuzz_seed} .venv/bin/python "
                         "-m pytest tests/test_fhir_openapi.py -k fuzz")
        raise
    print(f"FHIR fuzz: {fuzzer.requests} requests, statuses {sorted(statuses.items())}")
    assert fuzzer.requests >= 1000
    assert statuses.get(200, 0) + statuses.get(201, 0) > 50  # not only refusals
