"""Shared pytest fixtures. Every fixture model is built here or by a committed script under tests/."""
