"""tomllib on 3.11+, tomli before."""

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["tomllib", "toml_error_line"]


def toml_error_line(exc: Exception) -> str:
    """'line N, column M' from a TOMLDecodeError message, best effort."""
    return str(exc)
