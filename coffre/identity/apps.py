from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "coffre.identity"
    verbose_name = "Patient identity"
