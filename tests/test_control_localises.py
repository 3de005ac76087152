"""scripts/control_localises.py: its command line parses (the study itself runs for minutes, see its docstring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_help_names_the_tuning_split():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "control_localises.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--designs" in out.stdout and "--split" in out.stdout and "tuning" in out.stdout
