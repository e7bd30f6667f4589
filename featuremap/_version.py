"""The version of featuremap (one place; the package, the CLI and provenance read it)."""

__version__ = "0.2.0"
