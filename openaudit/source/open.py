"""Pick the right source for what the user named."""

from __future__ import annotations

from openaudit.release import Release
from openaudit.source.local import open_local


def open_source(spec: str) -> Release:
    """A local folder, file or Hugging Face cache snapshot. Raises UsageError if it does not exist."""
    return open_local(spec)
