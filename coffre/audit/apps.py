from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "coffre.audit"
    verbose_name = "Access log"
