"""codesearch: semantic code search over a repository's functions."""

__version__ = "0.1.0"
