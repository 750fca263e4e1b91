"""The pages: a room with its saved history and a WebSocket client, and a login form."""

from __future__ import annotations

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import ChatMessage


def index(request: HttpRequest) -> HttpResponse:
    return redirect("/room/lobby/")


def room(request: HttpRequest, room: str) -> HttpResponse:
    history = ChatMessage.objects.filter(room=room)
    return render(request, "chat/room.html", {"room": room, "history": history})


def login_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        user = authenticate(
            request,
            username=request.POST.get("username", ""),
            password=request.POST.get("password", ""),
        )
        if user is None:
            return render(
                request, "chat/login.html", {"error": "Wrong user name or password"}, status=403
            )
        login(request, user)
        return redirect(request.POST.get("next") or "/")
    return render(request, "chat/login.html", {"next": request.GET.get("next", "/")})
