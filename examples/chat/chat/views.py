"""Pages: the room picker, a room with its last 50 messages, and sign-up."""

from asgiref.sync import async_to_sync
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from chat.consumers import room_group
from chat.models import ROOM_NAME, ChatMessage
from headrace.layers import get_channel_layer


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html")


def room(request: HttpRequest, room_name: str) -> HttpResponse:
    if not ROOM_NAME.fullmatch(room_name):
        raise Http404("Room names use letters, digits, '-' and '_' (at most 80).")
    # The group's position first, then the messages: whatever is sent after the position was
    # read, the page's socket gets on connecting (it may also be on the page: ids tell).
    position = room_position(room_name)
    context = {
        "room_name": room_name,
        "messages": ChatMessage.recent(room_name),
        "positions": position,
    }
    return render(request, "chat/room.html", context)


def room_position(room_name: str) -> dict[str, list[object]]:
    """``{group: [epoch, offset]}`` of the room's group now ({} when the layer keeps no history)."""
    layer = get_channel_layer()
    if layer is None or "history" not in layer.extensions:
        return {}
    group = room_group(room_name)
    current = async_to_sync(layer.group_history)(group, limit=0)
    return {group: [current.epoch, current.offset]}


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect(request.GET.get("next") or "/chat/")
    return render(request, "registration/signup.html", {"form": form})
