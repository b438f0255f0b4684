"""The example's build step: copies public/ into dist/ and prints what it did (no network needed)."""

import shutil
import sys
from pathlib import Path

shutil.rmtree("dist", ignore_errors=True)
shutil.copytree("public", "dist")
for path in sorted(Path("dist").rglob("*")):
    print(f"emitted {path}", flush=True)
print("warning: no minifier configured", file=sys.stderr, flush=True)
print("build complete")
