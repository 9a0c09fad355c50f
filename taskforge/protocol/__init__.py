"""The queue protocol."""
