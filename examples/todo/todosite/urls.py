from django.urls import path
from todo import views

urlpatterns = [
    path("", views.index, name="index"),
    path("tasks.json", views.task_list, name="task-list"),
]
