"""Scripts that the run tests start in subprocesses (the device count is fixed when a JAX backend starts)."""
