from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "coffre.audit"
    verbose_name = "Access log"

    def ready(self) -> None:
        from coffre.audit.sealed import register_sealed

        register_sealed()
