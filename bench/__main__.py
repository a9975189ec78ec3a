"""`python -m bench` (or `make bench`): run every benchmark and print its markdown section."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
failed = [n for n in names if subprocess.run([sys.executable, "-m", f"bench.{n}"]).returncode != 0]
sys.exit(f"failed: {', '.join(failed)}" if failed else 0)
