from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "coffre.accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from coffre.accounts.mfa import _forget_on_login

        user_logged_in.connect(_forget_on_login, dispatch_uid="coffre-mfa-forget")
