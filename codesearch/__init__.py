"""codesearch: semantic code search over a repository's functions."""

import os

__version__ = "0.1.0"

# ONNX Runtime 1.29+ sends usage telemetry from Linux and macOS (a 1DS uploader, a device id and an
# event database under ~/.cache/Microsoft) unless this is set before it initialises. A local code
# search tool has no business phoning home, and the uploader's teardown can stall a process on a
# network that drops the connection (a test's `codesearch index` hung 300 s so). A user may set it to 0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
