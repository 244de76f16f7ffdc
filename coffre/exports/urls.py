"""The export pages (paths in French, names in English)."""

from django.urls import path

from coffre.exports import views

urlpatterns = [
    path("exports/", views.export_list, name="export_list"),
    path("exports/nouvelle/", views.export_new, name="export_new"),
    path("exports/<int:export_id>/", views.export_detail, name="export_detail"),
    path("exports/<int:export_id>/approuver/", views.export_approve, name="export_approve"),
    path("exports/<int:export_id>/refuser/", views.export_refuse, name="export_refuse"),
]
