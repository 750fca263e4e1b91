"""``runworker`` and ``runserver``."""
