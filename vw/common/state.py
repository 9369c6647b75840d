"""State kept under the state directory: secrets generated once and reused."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def persistent_secret(state_dir: Path, name: str) -> str:
    """The secret stored as ``state_dir/name``, generated (mode 0600) on first use."""
    path = state_dir / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
