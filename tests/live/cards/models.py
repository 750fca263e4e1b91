from django.db import models


class Card(models.Model):
    board = models.CharField(max_length=40)
    title = models.CharField(max_length=100)
    done = models.BooleanField(default=False)
    secret = models.CharField(max_length=40, default="hidden")

    def title_upper(self) -> str:
        return self.title.upper()
