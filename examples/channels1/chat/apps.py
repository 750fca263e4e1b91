from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "examples.channels1.chat"
    label = "channels1_chat"
