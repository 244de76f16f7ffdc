from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "coffre.exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from coffre.exports.sealing import register_sealed

        register_sealed()  # for `coffre keys rotate --installation export-text|exports`
