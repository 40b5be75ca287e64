"""logist: a git-native job tracker for agent work."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
