from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "coffre.lab"
    verbose_name = "Lab workflow"
