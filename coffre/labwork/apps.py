from django.apps import AppConfig


class LabConfig(AppConfig):
    name = "coffre.labwork"
    label = "lab"  # the tables and migrations keep their names
    verbose_name = "Lab workflow"

    def ready(self) -> None:
        from django.core.signals import got_request_exception

        from coffre.labwork.sealing import report_request_failure

        # A result changed outside Coffre met by a page or the API is alerted.
        got_request_exception.connect(report_request_failure,
                                      dispatch_uid="coffre-lab-tampering")
