"""Inspectors: read one kind of file from a release without trusting it, and return typed facts."""
