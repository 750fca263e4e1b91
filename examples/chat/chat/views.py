"""Pages: the room picker, a room with its last 50 messages, and sign-up."""

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from chat.models import ROOM_NAME, ChatMessage


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html")


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    if not ROOM_NAME.fullmatch(room_name):
        raise Http404("Room names use letters, digits, '-' and '_' (at most 80).")
    context = {"room_name": room_name, "messages": ChatMessage.recent(room_name)}
    return render(request, "chat/room.html", context)


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect(request.GET.get("next") or "/chat/")
    return render(request, "registration/signup.html", {"form": form})
