"""The hooks' log (``.git/logist/hooks.log``): what a hook that runs detached and silent did."""

from __future__ import annotations

import time
from pathlib import Path


def append_log(path: Path, name: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size > 1_000_000:
            path.replace(path.with_suffix(".log.1"))
    except OSError:
        pass
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with path.open("a") as fh:
        for line in lines:
            fh.write(f"{stamp} {name}: {line}\n")
