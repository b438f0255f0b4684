"""A dev server with no dependencies: serves ./dist on $PORT (what `start` runs in the sandbox)."""

import functools
import http.server
import os

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="dist")
http.server.test(handler, port=int(os.environ["PORT"]), bind="127.0.0.1")
