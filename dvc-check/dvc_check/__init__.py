"""dvc-check: prove in CI that a DVC pipeline is honest (README.md)."""

__version__ = "0.1.0"
