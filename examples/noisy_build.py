"""A pretend build for the streaming demo: stdout and stderr, a long line, a progress bar, a failure.

Run by `make run` as a real subprocess; its output is streamed through the LogStreamer.
"""

import sys
import time


def main() -> int:
    out, err = sys.stdout, sys.stderr
    print("resolving dependencies for demo-app@1.0.0", flush=True)
    for name in ("react", "react-dom", "vite", "typescript", "zod"):
        print(f"  + {name}", flush=True)
        time.sleep(0.08)
    print("npm WARN deprecated inflight@1.0.6: not supported, leaks memory", file=err, flush=True)
    for percent in range(0, 101, 10):  # a terminal progress bar: only the last state should remain
        out.write(f"\rdownloading packages [{'#' * (percent // 10):<10}] {percent:3d}%")
        out.flush()
        time.sleep(0.06)
    out.write("\n")
    print("minified bundle: " + "x" * 20_000, flush=True)  # longer than LOG_MAX_LINE_BYTES
    print("héllo wörld ✓ — unicode survives byte-chunked reads", flush=True)
    print("compiling src/App.tsx ...", flush=True)
    time.sleep(0.2)
    print("src/App.tsx(12,7): error TS2322: Type 'number' is not assignable to type 'string'.", file=err, flush=True)
    out.write("build failed after 1 error")  # the last line has no newline: flush() must keep it
    out.flush()
    return 1


if __name__ == "__main__":
    sys.exit(main())
