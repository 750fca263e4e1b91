from django.contrib import admin

from chat.models import ChatMessage

admin.site.register(ChatMessage)
