#!/usr/bin/env python3
"""The Channels-1 example's manage.py (run from the repository root:
``python examples/channels1/manage.py runserver``)."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.channels1.project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
