from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "coffre.audit"
    verbose_name = "Access log"

    def ready(self) -> None:
        from coffre.audit import canaries, detection, log
        from coffre.audit.sealed import register_sealed

        register_sealed()
        # Every chained read: first the canary check, then the mass-reading detection.
        log.on_read(canaries.check_reads)
        log.on_read(detection.observe)
