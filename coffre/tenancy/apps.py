from django.apps import AppConfig


class LabsConfig(AppConfig):
    name = "coffre.tenancy"
    label = "labs"  # the tables and migrations keep their names
    verbose_name = "Laboratories"
