"""Fails at import, like a plugin whose dependency is not installed."""

import i2i_a_dependency_that_is_not_installed  # noqa: F401
