from django.apps import AppConfig


class KeyringConfig(AppConfig):
    name = "coffre.keyring"
    verbose_name = "Keyring"
