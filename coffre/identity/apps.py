from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "coffre.identity"
    verbose_name = "Patient identity"

    def ready(self) -> None:
        from coffre.identity.models import Patient
        from coffre.keyring.rotation import register_data_keys

        # The keyring rotates the lab keys wrapping each patient's data key without
        # importing this app (docs/architecture.md, "Layers").
        register_data_keys(Patient)
