"""The package version (the one source; setup.py reads it)."""
__version__ = "0.1.0"
