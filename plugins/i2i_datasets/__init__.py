"""Built-in plugin: the named-dataset catalogue (being written)."""
