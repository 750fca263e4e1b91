"""The test settings served under a URL prefix (FORCE_SCRIPT_NAME becomes root_path)."""

from tests.django.settings import *  # noqa: F403

FORCE_SCRIPT_NAME = "/prefix"
