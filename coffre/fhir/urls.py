"""Included at /fhir/. Built from coffre.fhir.routes: one read URL per type, one type URL
(search and/or create) per type that offers either, the transaction at the root."""

from django.urls import path, re_path

from coffre.fhir import views
from coffre.fhir.create import CREATORS
from coffre.fhir.routes import READ_TYPES
from coffre.fhir.service import SEARCHERS

urlpatterns = [
    path("metadata", views.metadata, name="fhir_metadata"),
    path("openapi.json", views.openapi_json, name="fhir_openapi"),
    path("", views.root, name="fhir_root"),
]
for _type in READ_TYPES:
    if _type in SEARCHERS or _type in CREATORS:
        urlpatterns.append(path(_type, views.type_view(_type), name=f"fhir_{_type}"))
    urlpatterns.append(path(f"{_type}/<str:resource_id>", views.instance_view(_type),
                            name=f"fhir_{_type}_read"))
# Last: anything else under /fhir/ except the token endpoint (coffre.apiclients).
urlpatterns.append(re_path(r"^(?!auth/token$)(?P<rest>.*)$", views.unknown,
                           name="fhir_unknown"))
