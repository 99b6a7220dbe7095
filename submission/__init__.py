"""bratskit runtime: everything the submission container runs (no torch required)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
