from django.apps import AppConfig


class FhirConfig(AppConfig):
    name = "coffre.fhir"
    verbose_name = "FHIR API"
