from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from todo.models import Task


def _tasks() -> list[dict[str, object]]:
    return list(Task.objects.values("pk", "title", "done"))


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "todo/index.html", {"tasks": _tasks()})


def task_list(request: HttpRequest) -> JsonResponse:
    """The whole list, reloaded by the page after a reconnection (it may have missed changes)."""
    return JsonResponse({"tasks": _tasks()})
