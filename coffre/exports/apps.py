from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "coffre.exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from coffre.exports.sealing import register_sealed
        from coffre.exports.services import WATERMARK_PURPOSE, watermark_uses
        from coffre.keyring.installation import register_derived_use

        # For `coffre keys rotate|retire --installation export-text|exports`: the sealed
        # texts, then the watermark fingerprints that need a version of "exports".
        register_sealed()
        register_derived_use(WATERMARK_PURPOSE, watermark_uses)
