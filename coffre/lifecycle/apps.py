from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "coffre.lifecycle"
    verbose_name = "Data lifecycle"

    def ready(self) -> None:
        from coffre.lifecycle.retention import register_sealed

        register_sealed()  # for `coffre keys rotate --installation legal-hold`
