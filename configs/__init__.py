"""Recipes (YAML) shipped with i2i."""
