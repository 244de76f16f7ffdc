from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "coffre.exports"
    verbose_name = "Exports"
