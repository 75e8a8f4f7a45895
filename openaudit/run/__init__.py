"""The JAX path (``--run``): loading, sharding, streaming, forward passes and probes. Imports jax."""
