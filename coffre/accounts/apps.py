from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "coffre.accounts"
    verbose_name = "Accounts"
