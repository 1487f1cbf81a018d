"""codesearch: semantic code search over a repository's functions."""

import os

__version__ = "0.1.0"

# ONNX Runtime 1.29+ sends usage telemetry from Linux and macOS (a 1DS uploader, a device id and an
# event database under ~/.cache/Microsoft) unless this is set before it initialises. A local code
# search tool has no business phoning home, offline machines queue the events forever, and other
# projects report the uploader aborting processes at exit. A user may set it to 0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
