"""Fixtures of the core tests.  The helpers live in hub_helpers.py: test modules import them
from there (a module named `conftest` is ambiguous when several test folders have one)."""

from hub_helpers import make_server, run_loop  # noqa: F401  (pytest fixtures)
