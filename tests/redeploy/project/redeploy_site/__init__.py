"""A Channels-1 project the redeploy tests run as real interface servers and workers.

Each test copies this folder to a scratch directory and rewrites ``consumers.py`` there to ship
"new code" between worker generations; settings come from ``REDEPLOY_*`` variables.
"""
