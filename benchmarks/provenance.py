"""What every benchmark records beside its figures: the code measured and the machine it ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_state(paths: Sequence[str] = ("src",)) -> dict[str, Any]:
    """The commit measured and whether ``paths`` differ from it (the figures belong to that code)."""
    status = _git("status", "--porcelain", "--", *paths)
    return {
        "commit": _git("rev-parse", "HEAD"),
        "subject": _git("log", "-1", "--format=%s"),
        "src_modified": None if status is None else bool(status),
    }


def machine(**extra: Any) -> dict[str, Any]:
    """Python, platform, CPU model and count, load at start; ``extra`` adds library versions and such."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }
