"""Deliberately broken i2i plugins (see pyproject.toml): i2i must warn once each and carry on."""
