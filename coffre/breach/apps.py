from django.apps import AppConfig


class BreachConfig(AppConfig):
    name = "coffre.breach"
    verbose_name = "Breach response"
