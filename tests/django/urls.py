"""URLs of the test project: a page that names the user and a login endpoint."""

from __future__ import annotations

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def whoami(request: HttpRequest) -> HttpResponse:
    name = request.user.username if request.user.is_authenticated else "anonymous"
    return HttpResponse(f"{name} {request.META.get('SCRIPT_NAME', '')}|", content_type="text/plain")


@csrf_exempt
def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("bad credentials", status=403)
    login(request, user)
    return HttpResponse("ok")


urlpatterns = [
    path("whoami/", whoami),
    path("login/", login_view),
]
