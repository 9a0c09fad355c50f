"""The Redis layer."""
