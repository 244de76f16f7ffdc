from django.urls import path

from coffre.portal import views

urlpatterns = [
    path("portail/activation/", views.activation, name="portal_activation"),
    path("portail/", views.portal_home, name="portal_home"),
    path("portail/demandes/<uuid:order_id>/", views.portal_order, name="portal_order"),
    path("portail/demandes/<uuid:order_id>/compte-rendu.pdf", views.portal_report,
         name="portal_report"),
    path("portail/resultats/<str:loinc>/", views.portal_chart, name="portal_chart"),
    path("demandes/<uuid:order_id>/recu.pdf", views.order_receipt, name="order_receipt"),
    path("prescripteur/", views.prescriber_home, name="prescriber_home"),
    path("prescripteur/demandes/<uuid:order_id>/", views.prescriber_order,
         name="prescriber_order"),
    path("prescripteur/demandes/<uuid:order_id>/compte-rendu.pdf", views.prescriber_report,
         name="prescriber_report"),
    path("portail/mes-donnees.zip", views.portal_my_data, name="portal_my_data"),
    path("portail/acces/", views.portal_access_log, name="portal_access_log"),
]
