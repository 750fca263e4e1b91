"""Data binding core: model changes out to groups, client changes in to the model.

Theory of operation
-------------------
A binding class ties one Django model to one stream. Defining a subclass with a ``model`` set
connects it to the model's ``pre_save``/``post_save``/``pre_delete``/``post_delete`` signals
(``model`` may be ``"app_label.ModelName"``; Django resolves the sender lazily). The class must
also set ``fields`` (a whitelist, ``["__all__"]`` for every field) **or** ``exclude`` (a
blacklist), else its creation raises ``ValueError``; both lists also bound what clients may
write.

*Outbound.* Before a save, the binding records the groups the **stored row** belongs to
(``group_names`` of the row as it is in the database; none for a new row); after the save it
computes the groups of the saved instance. Members of a group that lost the instance get
``delete``, groups that keep it get ``update``, groups that gained it get ``create`` (the
DDP-derived rule of Channels 1.x). A delete records the groups before and sends ``delete`` to
all of them. The payload ``{"action", "pk", "data", "model"}`` is serialised at signal time
(``data`` from Django's JSON serializer, restricted to the field list, so foreign keys are
primary keys); an empty payload from an overridden :meth:`Binding.serialize` is skipped.
Each change is handed to :meth:`Binding.send_messages` through ``transaction.on_commit``
(``robust=True``: a failing send is logged by Django and does not break the caller), so
clients never hear of a change that was rolled back and never see a row before other
connections can read it.

Two fixes over Channels 1.x: it computed the "old" groups from the in-memory instance
(already carrying the new values, so a change of group went out as ``update`` to the new
group only, and the old group never got its ``delete``), and it sent during the transaction.

*Inbound.* :meth:`Binding.apply_inbound` (sync: it runs in a worker thread) takes the
deserialised ``(action, pk, data)``, checks the action, ``has_permission(user, action, pk)``
and that every key of ``data`` is a writable field of the lists, then runs ``create``,
``update`` or ``delete`` in one ``transaction.atomic`` block. Rows are built through Django's
``python`` deserializer (the field types' own parsing) and checked with ``full_clean()``. It
returns ``(pk, errors)``: a list of readable strings, empty on success. The modern consumer
answers with them; the 1.x binding logs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from functools import partial
from typing import Any, ClassVar

from django.core import serializers
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.serializers.base import DeserializationError
from django.db import models, transaction
from django.db.models import signals

__all__ = ["ACTIONS", "CREATE", "DELETE", "UPDATE", "Binding", "BindingMetaclass"]

logger = logging.getLogger("headrace.binding")

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
ACTIONS = (CREATE, UPDATE, DELETE)

Outbound = list[tuple[str, dict[str, Any]]]
"""``(group, payload)`` pairs, one per group, sent together after the commit."""

_OLD_GROUPS = "_headrace_binding_old_groups"

registry: list[type[Binding]] = []
"""Every binding class with a model, in definition order."""


class BindingMetaclass(type):
    """Validates and registers every binding class that names a model."""

    def __init__(cls, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> None:
        super().__init__(name, bases, attrs)
        if getattr(cls, "model", None) is not None:
            binding: Any = cls
            binding.check_declaration()
            binding.register()


class Binding(metaclass=BindingMetaclass):
    """Base of :class:`headrace.binding.ModelBinding` and the 1.x ``WebsocketBinding``."""

    model: ClassVar[type[models.Model] | str | None] = None
    stream: ClassVar[str | None] = None
    fields: ClassVar[list[str] | None] = None
    exclude: ClassVar[list[str] | None] = None

    # ------------------------------------------------------------------ declaration

    @classmethod
    def check_declaration(cls) -> None:
        if cls.fields is None and cls.exclude is None:
            raise ValueError(
                f"{cls.__name__} must set fields (a whitelist, or ['__all__']) or exclude"
            )
        if cls.fields is not None and cls.exclude is not None:
            raise ValueError(f"{cls.__name__} sets both fields and exclude: set one")
        if not cls.stream or not isinstance(cls.stream, str):
            raise ValueError(f"{cls.__name__}.stream must be a non-empty string")

    @classmethod
    def register(cls) -> None:
        """Connect the model's signals to this class (done when the class is created)."""
        uid = f"headrace.binding:{cls.__module__}.{cls.__qualname__}"
        sender = cls.model
        signals.pre_save.connect(cls._pre_save, sender=sender, weak=False, dispatch_uid=uid)
        signals.post_save.connect(cls._post_save, sender=sender, weak=False, dispatch_uid=uid)
        signals.pre_delete.connect(cls._pre_delete, sender=sender, weak=False, dispatch_uid=uid)
        signals.post_delete.connect(cls._post_delete, sender=sender, weak=False, dispatch_uid=uid)
        registry.append(cls)

    @classmethod
    def model_class(cls) -> type[models.Model]:
        """The bound model (resolving an ``"app_label.ModelName"`` string)."""
        if isinstance(cls.model, str):
            from django.apps import apps

            resolved: type[models.Model] = apps.get_model(cls.model)
            return resolved
        if cls.model is None:
            raise ValueError(f"{cls.__name__}.model is not set")
        return cls.model

    # ------------------------------------------------------------------ to override

    @classmethod
    def group_names(cls, instance: Any) -> Iterable[str]:
        """The groups that should hear about ``instance`` (override)."""
        raise NotImplementedError(f"{cls.__name__} must define the classmethod group_names()")

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        """Whether ``user`` may run ``action`` on ``pk`` (override; default: nobody may)."""
        return False

    def serialize(self, instance: Any, action: str) -> dict[str, Any]:
        """The outbound payload for ``instance``; return ``{}`` to send nothing."""
        serialized = json.loads(
            serializers.serialize("json", [instance], fields=self.serialized_fields())
        )[0]
        return {
            "action": action,
            "pk": serialized["pk"],
            "data": self.serialize_data(instance, serialized["fields"]),
            "model": serialized["model"],
        }

    def serialize_data(self, instance: Any, data: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of a payload, from the serializer's fields (override to add keys)."""
        return data

    def send_messages(self, messages: Outbound) -> None:
        """Send each ``(group, payload)``; called after the commit (the subclasses do it)."""
        raise NotImplementedError

    def create(self, data: dict[str, Any]) -> Any:
        """Create a row from client ``data``; return its primary key."""
        hydrated = self._hydrate(None, data)
        instance = hydrated.object
        instance.full_clean()
        instance.save()
        self._save_m2m(instance, hydrated.m2m_data)
        return instance.pk

    def update(self, pk: Any, data: dict[str, Any]) -> None:
        """Apply client ``data`` to row ``pk``."""
        model = self.model_class()
        instance = model._default_manager.get(pk=pk)
        hydrated = self._hydrate(pk, data)
        for name in data:
            field = model._meta.get_field(name)
            if not field.many_to_many:
                setattr(instance, field.attname, getattr(hydrated.object, field.attname))
        instance.full_clean()
        instance.save()
        self._save_m2m(instance, hydrated.m2m_data)

    def delete(self, pk: Any) -> None:
        """Delete row ``pk``."""
        self.model_class()._default_manager.get(pk=pk).delete()

    # ------------------------------------------------------------------ fields

    def serialized_fields(self) -> list[str] | None:
        """The field names sent out (``None``: every field)."""
        if self.fields is not None:
            return None if "__all__" in self.fields else list(self.fields)
        excluded = set(self.exclude or ())
        return [f.name for f in self.model_class()._meta.fields if f.name not in excluded]

    def writable_fields(self) -> set[str]:
        """The field names a client may set: the lists, minus the primary key."""
        meta = self.model_class()._meta
        names = {f.name for f in [*meta.fields, *meta.many_to_many] if f.editable}
        names.discard(meta.pk.name)
        chosen = self.serialized_fields()
        return names if chosen is None else names & set(chosen)

    # ------------------------------------------------------------------ inbound

    def deserialize_payload(self, payload: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(action, pk, data)`` of an inbound payload."""
        return payload.get("action"), payload.get("pk"), payload.get("data", {})

    def apply_inbound(self, user: Any, action: Any, pk: Any, data: Any) -> tuple[Any, list[str]]:
        """Check and run one inbound action; ``(pk, errors)`` (see the module docs)."""
        errors = self._refusals(user, action, pk, data)
        if errors:
            return pk, errors
        try:
            with transaction.atomic(using=self._database()):
                return self._run(action, pk, data), []
        except ObjectDoesNotExist:
            return pk, [f"no {self.model_class()._meta.label_lower} with pk {pk!r}"]
        except ValidationError as error:
            return pk, _validation_messages(error)
        except (DeserializationError, ValueError, TypeError) as error:
            return pk, [str(error)]

    def _refusals(self, user: Any, action: Any, pk: Any, data: Any) -> list[str]:
        if action not in ACTIONS:
            return [f"unknown action {action!r}: use create, update or delete"]
        if action != CREATE and pk is None:
            return [f"{action} needs a pk"]
        if action != DELETE and not isinstance(data, dict):
            return ["data must be an object"]
        if not self.has_permission(user, action, pk):
            return ["permission denied"]
        if action == DELETE:
            return []
        writable = self.writable_fields()
        return [f"field {name!r} is not writable" for name in data if name not in writable]

    def _run(self, action: str, pk: Any, data: dict[str, Any]) -> Any:
        if action == CREATE:
            return self.create(data)
        if action == UPDATE:
            self.update(pk, data)
        else:
            self.delete(pk)
        return pk

    def _database(self) -> str:
        from django.db import router

        return str(router.db_for_write(self.model_class()))

    def _hydrate(self, pk: Any, data: dict[str, Any]) -> Any:
        label = self.model_class()._meta.label_lower
        rows = [{"model": label, "pk": pk, "fields": data}]
        return next(iter(serializers.deserialize("python", rows)))

    @staticmethod
    def _save_m2m(instance: Any, m2m_data: dict[str, Any] | None) -> None:
        for name, values in (m2m_data or {}).items():
            getattr(instance, name).set(values)

    # ------------------------------------------------------------------ outbound (signals)

    @classmethod
    def _pre_save(cls, sender: Any, instance: Any, using: str | None = None, **_: Any) -> None:
        old: set[str] = set()
        if not instance._state.adding and instance.pk is not None:
            stored = sender._base_manager.using(using).filter(pk=instance.pk).first()
            if stored is not None:
                old = set(cls.group_names(stored))
        instance.__dict__.setdefault(_OLD_GROUPS, {})[cls] = old

    @classmethod
    def _post_save(
        cls, sender: Any, instance: Any, created: bool = False, using: str | None = None, **_: Any
    ) -> None:
        cls._send_changes(
            instance, _pop_old_groups(instance, cls), set(cls.group_names(instance)), using
        )

    @classmethod
    def _pre_delete(cls, sender: Any, instance: Any, **_: Any) -> None:
        instance.__dict__.setdefault(_OLD_GROUPS, {})[cls] = set(cls.group_names(instance))

    @classmethod
    def _post_delete(cls, sender: Any, instance: Any, using: str | None = None, **_: Any) -> None:
        cls._send_changes(instance, _pop_old_groups(instance, cls), set(), using)

    @classmethod
    def _send_changes(cls, instance: Any, old: set[str], new: set[str], using: str | None) -> None:
        binding = cls()
        messages: Outbound = []
        for action, groups in ((DELETE, old - new), (UPDATE, old & new), (CREATE, new - old)):
            if not groups:
                continue
            payload = binding.serialize(instance, action)
            if payload:
                messages.extend((group, payload) for group in sorted(groups))
        if messages:
            transaction.on_commit(partial(binding.send_messages, messages), using, robust=True)


def _pop_old_groups(instance: Any, binding: type[Binding]) -> set[str]:
    """The groups recorded before the change (none when the pre-signal did not run), leaving
    nothing behind on the instance."""
    recorded: dict[type[Binding], set[str]] = instance.__dict__.get(_OLD_GROUPS, {})
    old = recorded.pop(binding, set())
    if not recorded:
        instance.__dict__.pop(_OLD_GROUPS, None)
    return old


def _validation_messages(error: ValidationError) -> list[str]:
    with contextlib.suppress(AttributeError):
        return [
            f"{field}: {message}" if field != "__all__" else message
            for field, messages in error.message_dict.items()
            for message in messages
        ]
    return list(error.messages)
