"""``manage.py`` of the redeploy test project (copied to a scratch folder per test)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "redeploy_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
