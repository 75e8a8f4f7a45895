"""Architecture families: config -> expected tensors, shapes and parameter count (no weights needed)."""
