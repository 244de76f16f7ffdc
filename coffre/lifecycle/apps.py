from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "coffre.lifecycle"
    verbose_name = "Data lifecycle"
