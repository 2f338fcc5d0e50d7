"""The package version, in one place (the facade and every file writer read it here)."""

__version__ = "0.1.0"
