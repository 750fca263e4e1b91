"""The task list, bound to the ``tasks`` stream: every change reaches every open page."""

from typing import Any

from headrace.binding import ModelBinding
from todo.models import Task

GROUP = "todo-tasks"


class TaskBinding(ModelBinding):
    model = Task
    stream = "tasks"
    fields = ["title", "done"]

    @classmethod
    def group_names(cls, instance: Task) -> list[str]:
        return [GROUP]

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        # A shared public list: anyone may edit. A real app checks ``user`` here.
        return True
