"""Roost's built-in integrations, one folder each."""
