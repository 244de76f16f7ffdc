"""The lab workflow's staff pages (paths in French, names in English)."""

from django.urls import path

from coffre.labwork import views

urlpatterns = [
    path("patients/<uuid:patient_id>/demandes/nouvelle/", views.order_new, name="order_new"),
    path("patients/<uuid:patient_id>/resultats/<str:loinc>/", views.result_chart,
         name="result_chart"),
    path("demandes/<uuid:order_id>/", views.order_detail, name="order_detail"),
    path("demandes/<uuid:order_id>/action/", views.order_action, name="order_action"),
    path("demandes/<uuid:order_id>/etiquettes.pdf", views.order_labels, name="order_labels"),
    path("demandes/<uuid:order_id>/compte-rendu.pdf", views.order_report,
         name="order_report"),
    path("demandes/<uuid:order_id>/apercu/", views.order_preview, name="order_preview"),
    path("reception/", views.reception, name="reception"),
    path("paillasses/", views.worklist, name="worklist"),
    path("saisie/", views.result_entry, name="result_entry"),
    path("validation/", views.validation, name="validation"),
    path("laboratoire/reglages/", views.lab_settings, name="lab_settings"),
]
