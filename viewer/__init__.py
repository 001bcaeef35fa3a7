"""The real-time pygame window (lands with issue #4)."""
