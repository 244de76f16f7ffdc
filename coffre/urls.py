from django.contrib.auth import views as auth_views
from django.urls import include, path

from coffre.accounts import views as account_views
from coffre.audit import views as audit_views
from coffre.identity import views as identity_views
from coffre.portal import views as portal_views

urlpatterns = [
    path("", portal_views.home, name="home"),
    path("connexion/", auth_views.LoginView.as_view(template_name="accounts/login.html"),
         name="login"),
    path("connexion/code/", account_views.mfa_verify, name="mfa_verify"),
    path("connexion/activation-2fa/", account_views.mfa_enroll, name="mfa_enroll"),
    path("deconnexion/", auth_views.LogoutView.as_view(), name="logout"),
    path("laboratoire/", account_views.choose_lab, name="choose_lab"),
    path("patients/", identity_views.patient_search, name="patient_search"),
    path("patients/<uuid:patient_id>/", identity_views.patient_detail, name="patient_detail"),
    path("patients/bris-de-glace/", identity_views.break_glass_search,
         name="break_glass_search"),
    path("patients/<uuid:patient_id>/bris-de-glace/", identity_views.break_glass_patient,
         name="break_glass_patient"),
    path("alertes/", audit_views.alert_list, name="alerts"),
    path("alertes/<int:alert_id>/acquitter/", audit_views.alert_acknowledge,
         name="alert_acknowledge"),
    path("alertes/verrous/<int:lock_id>/deverrouiller/", audit_views.account_unlock,
         name="account_unlock"),
    path("", include("coffre.accounts.urls")),
    path("", include("coffre.labwork.urls")),
    path("", include("coffre.portal.urls")),
    path("", include("coffre.exports.urls")),
    path("", include("coffre.apiclients.urls")),
    path("", include("coffre.breach.urls")),
    path("fhir/", include("coffre.fhir.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
]
