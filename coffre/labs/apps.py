from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "coffre.labs"
    verbose_name = "Laboratories"
