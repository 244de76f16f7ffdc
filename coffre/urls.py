from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from coffre.accounts import views as account_views
from coffre.identity import views as identity_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="patient_search"), name="home"),
    path("connexion/", auth_views.LoginView.as_view(template_name="accounts/login.html"),
         name="login"),
    path("deconnexion/", auth_views.LogoutView.as_view(), name="logout"),
    path("laboratoire/", account_views.choose_lab, name="choose_lab"),
    path("patients/", identity_views.patient_search, name="patient_search"),
    path("patients/<uuid:patient_id>/", identity_views.patient_detail, name="patient_detail"),
    path("i18n/", include("django.conf.urls.i18n")),
]
