from django.urls import path

from coffre.apiclients import token, views

urlpatterns = [
    path("fhir/auth/token", token.token, name="fhir_token"),
    path("laboratoire/clients-api/", views.api_clients, name="api_clients"),
    path("laboratoire/clients-api/<int:client_pk>/", views.api_client_action,
         name="api_client_action"),
]
