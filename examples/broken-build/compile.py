"""The example's build step: checks every module under src/ the way a compiler would.

Prints one `file:line:col: error: message` diagnostic per broken file on stderr (with the line
and a caret, as gcc, tsc and rustc do) and exits 1, so the build stage fails on a real error.
"""

import sys
from pathlib import Path

errors = 0
for path in sorted(Path("src").rglob("*.py")):
    source = path.read_text()
    print(f"checking {path}", flush=True)
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        errors += 1
        line = (exc.text or "").rstrip("\n")
        print(f"{path}:{exc.lineno}:{exc.offset}: error: {exc.msg}", file=sys.stderr)
        print(f"    {line}", file=sys.stderr)
        print(f"    {' ' * max((exc.offset or 1) - 1, 0)}^", file=sys.stderr)
if errors:
    print(f"{errors} error{'s' if errors > 1 else ''} generated.", file=sys.stderr, flush=True)
    sys.exit(1)
print("no errors", flush=True)
