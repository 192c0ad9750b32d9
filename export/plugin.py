"""Hooks of the export package (commands `i2i export` and `i2i serve`)."""
