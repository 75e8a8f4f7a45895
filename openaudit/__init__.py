"""openaudit: audit AI model releases without trusting them."""

__version__ = "0.1.0"
