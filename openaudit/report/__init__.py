"""The Report dataclasses and the output formats."""
