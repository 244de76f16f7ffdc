from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "coffre.accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from coffre.accounts.mfa import _forget_on_login, register_sealed
        from coffre.accounts.sessions import stamp_session
        from coffre.accounts.temporary import note_on_login

        user_logged_in.connect(_forget_on_login, dispatch_uid="coffre-mfa-forget")
        # A temporary password is replaced before anything else.
        user_logged_in.connect(note_on_login, dispatch_uid="coffre-temporary-password")
        # Each new session belongs to the person's current epoch ("log out everywhere").
        user_logged_in.connect(stamp_session, dispatch_uid="coffre-session-epoch")
        register_sealed()  # for `coffre keys rotate --installation accounts`

        from coffre.accounts.models import Role, dpo_emails
        from coffre.audit import alerts, history

        # The audit, below this app, mails alerts to the lab's DPOs and names roles.
        alerts.officers_from(dpo_emails)
        history.register_role_labels(Role.choices)
