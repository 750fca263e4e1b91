from django.urls import path

from examples.channels1.chat import views

urlpatterns = [
    path("", views.index),
    path("room/<slug:room>/", views.room),
    path("login/", views.login_view),
]
