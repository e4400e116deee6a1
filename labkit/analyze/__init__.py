"""Capture analyzer (work in progress)."""
