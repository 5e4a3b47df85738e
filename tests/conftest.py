"""Fixtures shared by Roost's whole test suite."""
