"""Journeys: the box as its users meet it (see tests/journeys/harness.py)."""
