from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "coffre.portal"
    verbose_name = "Patient and prescriber portals"
