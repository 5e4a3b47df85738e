"""Roost's agent runtime: collects, spools and pushes reports; runs nothing the hub alone asks for."""
