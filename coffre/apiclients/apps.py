from django.apps import AppConfig


class ApiclientsConfig(AppConfig):
    name = "coffre.apiclients"
    verbose_name = "API clients"
