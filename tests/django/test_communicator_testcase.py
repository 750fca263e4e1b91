"""Communicators inside Django's ``TestCase``: consumers see the test's transaction.

A Channels project's tests typically create rows in a ``TestCase`` (one transaction per test,
rolled back afterwards) and then drive a consumer that reads them through
``database_sync_to_async``. That only works when the consumer's ORM calls run on the test's
own thread and connection, and when nothing closes that connection mid-test.
"""

from __future__ import annotations

import threading

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import TestCase

from headrace.db import database_sync_to_async
from headrace.generic.websocket import AsyncJsonWebsocketConsumer
from headrace.testing import WebsocketCommunicator


class UserList(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send_json(await self.usernames())

    @database_sync_to_async
    def usernames(self) -> dict[str, object]:
        names = list(
            get_user_model().objects.order_by("username").values_list("username", flat=True)
        )
        return {
            "names": names,
            "thread": threading.get_ident(),
            "in_transaction": connection.in_atomic_block,
        }


class CommunicatorInTestCase(TestCase):
    async def test_consumer_reads_rows_created_in_the_test_transaction(self) -> None:
        await get_user_model().objects.acreate(username="tc-zed")
        test_thread = await sync_to_async(threading.get_ident)()
        communicator = WebsocketCommunicator(UserList.as_asgi(), "/")
        connected, _ = await communicator.connect(timeout=5)
        self.assertTrue(connected)
        seen = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect(timeout=5)
        self.assertIn("tc-zed", seen["names"])
        self.assertEqual(seen["thread"], test_thread)
        self.assertTrue(seen["in_transaction"])

    async def test_rows_are_rolled_back_between_tests(self) -> None:
        exists = await get_user_model().objects.filter(username="tc-zed").aexists()
        self.assertFalse(exists)
