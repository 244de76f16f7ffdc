"""The staff accounts pages (paths in French, names in English)."""

from django.urls import path

from coffre.accounts import views

urlpatterns = [
    path("laboratoire/comptes/", views.lab_accounts, name="lab_accounts"),
    path("laboratoire/comptes/<int:membership_id>/", views.lab_account_action,
         name="lab_account_action"),
    path("compte/mot-de-passe/", views.password_change, name="password_change"),
    path("compte/deconnexion-partout/", views.logout_everywhere, name="logout_everywhere"),
]
