from django.urls import path

from tests.live.cards import views

urlpatterns = [
    path("cards/", views.card_list),
    path("cards/new/", views.card_create),
    path("cards/rollback/", views.card_create_rolled_back),
    path("cards/<int:pk>/", views.card_update),
    path("cards/<int:pk>/delete/", views.card_delete),
    path("bridge/<str:mode>/", views.bridge_page),
]
