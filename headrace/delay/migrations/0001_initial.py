# The delayed-message table of the delay server.

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc, unused-ignore]
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="DelayedMessage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("due_date", models.DateTimeField(db_index=True)),
                ("channel_name", models.CharField(max_length=512)),
                ("content", models.TextField()),
            ],
            options={
                "ordering": ["due_date", "id"],
            },
        ),
    ]
