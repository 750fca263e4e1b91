"""The URLconf the view consumer runs (``/view``); ``re_path`` on Django 2+, ``url`` on 1.11."""

from benchproj import views

try:
    from django.urls import re_path
except ImportError:  # Django 1.11 (the seed stack)
    from django.conf.urls import url as re_path

urlpatterns = [re_path(r"^view$", views.hello)]
