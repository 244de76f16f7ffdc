"""The breach pages (paths in French, names in English)."""

from django.urls import path

from coffre.breach import views

urlpatterns = [
    path("violations/", views.breach_list, name="breach_list"),
    path("violations/nouvelle/", views.breach_new, name="breach_new"),
    path("violations/<int:breach_id>/", views.breach_detail, name="breach_detail"),
    path("violations/<int:breach_id>/textes/", views.breach_texts, name="breach_texts"),
    path("violations/<int:breach_id>/cnil/", views.breach_cnil, name="breach_cnil"),
    path("violations/<int:breach_id>/courriers/", views.breach_letters,
         name="breach_letters"),
    path("violations/<int:breach_id>/courriers/<uuid:patient_id>/", views.breach_letter,
         name="breach_letter"),
    path("violations/<int:breach_id>/courriels/", views.breach_emails, name="breach_emails"),
    path("violations/<int:breach_id>/envois/", views.breach_send, name="breach_send"),
    path("violations/<int:breach_id>/relu/", views.breach_review, name="breach_review"),
]
