"""One client's session: messages read strictly (lsp.framing), checked, and handed to the pygls server.

pygls reads its input on a thread of the pool that also runs the handlers, drops requests it cannot
structure without answering them, ignores requests after `shutdown`, and on `exit` waits for running
requests. Here the reader has its own thread and these rules hold:

- every request gets an answer: a result, or a JSON-RPC error (a body that is not JSON: -32700 with
  id null; not a JSON-RPC 2.0 object: -32600; params that do not fit the method: -32602); a request
  without `params` is handled as if they were null;
- after `shutdown`, requests get -32600 and notifications are dropped;
- `exit` ends the process at once (code 0 after shutdown, else 1), even while requests run; so does
  the end of the stream, and a peer that speaks HTTP (closed unanswered);
- with a token (the TCP transport), the first message must be `initialize` carrying it as
  `initializationOptions.token`; anything else gets one error and the connection is closed before
  anything of the workspace is opened.

The server is used through pygls' public protocol API: structure_message, handle_message, set_writer.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import sys
import threading
from typing import Any, NoReturn

from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from lsp.framing import INVALID_REQUEST, BadMessage, FrameReader, FrameWriter, NotLsp

log = logging.getLogger("codesearch.lsp")

INVALID_PARAMS = -32602


class Session:
    """Serve `server` to one client over a pair of file descriptors, until `exit` or the end of input."""

    def __init__(self, server: LanguageServer, read_fd: int, write_fd: int, token: str | None = None) -> None:
        self.server = server
        self.reader = FrameReader(functools.partial(os.read, read_fd))
        self.writer = FrameWriter(write_fd)
        self.token = token  # None: no token is asked for (stdio, Unix socket)
        self.shutting_down = False
        self.loop = asyncio.new_event_loop()

    def run(self) -> NoReturn:
        """Read on a thread of its own; handle messages on this thread's event loop. Never returns."""
        self.server.protocol.set_writer(self.writer)
        asyncio.set_event_loop(self.loop)
        threading.Thread(target=self._read_all, name="codesearch lsp reader", daemon=True).start()
        self.loop.run_forever()
        self.end(1)

    def end(self, code: int) -> NoReturn:
        """End the process now: running requests are dropped, and an index write in progress is
        atomic, so nothing is left half done."""
        sys.stderr.flush()
        os._exit(code)

    # --- the reader thread ---------------------------------------------------------------------------

    def _read_all(self) -> None:
        try:
            while True:
                try:
                    data = self.reader.message()
                except BadMessage as exc:
                    log.warning("%s", exc)
                    self._error(None, exc.code, str(exc))
                    continue
                if data is None:
                    break
                self.dispatch(data)
        except NotLsp as exc:
            log.warning("closing the connection: %s", exc)
        except OSError as exc:  # the peer reset the connection
            log.info("connection lost: %s", exc)
        except Exception:  # noqa: BLE001 - a bug here must still end the session, not hang it
            log.exception("the session's reader failed")
        self.end(0 if self.shutting_down else 1)

    def dispatch(self, data: Any) -> None:
        """Check one message and hand it to pygls on the event loop (or answer it here)."""
        problem = envelope_problem(data)
        if problem is not None:
            self._error(_valid_id(data), INVALID_REQUEST, problem)
            return
        method = data.get("method")
        is_request = "id" in data and method is not None
        if method == "exit":
            self.end(0 if self.shutting_down else 1)
        if self.token is not None:
            self._authenticate(data)
        if self.shutting_down and method is not None:
            if is_request:
                self._error(data["id"], INVALID_REQUEST, f"{method}: the server is shutting down (only exit is accepted)")
            return
        if method is not None:
            data.setdefault("params", None)
        if is_request and method == "shutdown":
            self.shutting_down = True
        try:
            message = self.server.protocol.structure_message(data)
        except JsonRpcException as exc:
            log.warning("%s: bad params: %s", method, exc.__cause__ or exc)
            if is_request:
                why = "params are missing" if data["params"] is None else _cause(exc)
                self._error(data["id"], INVALID_PARAMS, f"bad params for {method}: {why}")
            return
        self.loop.call_soon_threadsafe(self._handle, message)

    def _handle(self, message: Any) -> None:
        try:
            self.server.protocol.handle_message(message)
        except Exception:  # noqa: BLE001 - pygls answers a failed request itself; this is a notification
            log.exception("handling %s failed", getattr(message, "method", "a message"))

    def _authenticate(self, data: dict) -> None:
        """The first message must be initialize with the token; the token is taken out of its options."""
        params = data.get("params")
        options = params.get("initializationOptions") if isinstance(params, dict) else None
        given = options.pop("token", None) if isinstance(options, dict) else None
        if data.get("method") == "initialize" and "id" in data and token_matches(given, self.token):
            self.token = None  # authenticated: the rest of the session is as over stdio
            return
        log.warning("refused a client without the right token")
        self._error(_valid_id(data), INVALID_REQUEST, "codesearch: this server needs its token first: send initialize "
                    "with initializationOptions.token (the token is in the file the server named at start)")
        self.end(1)

    def _error(self, msg_id: Any, code: int, message: str) -> None:
        reply = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        try:
            self.writer.send(reply)
        except OSError as exc:
            log.info("could not answer: %s", exc)


def token_matches(given: Any, expected: str | None) -> bool:
    """Whether `given` is the expected token (compared in constant time)."""
    if not isinstance(given, str) or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def envelope_problem(data: Any) -> str | None:
    """What makes `data` something other than one JSON-RPC 2.0 request, notification or response."""
    if not isinstance(data, dict):
        return f"a message must be a JSON object, not {type(data).__name__} (batches are not supported)"
    if data.get("jsonrpc") != "2.0":
        return "not a JSON-RPC 2.0 message: 'jsonrpc' must be \"2.0\""
    if "id" in data and _valid_id(data) is None:
        return "'id' must be an integer or a string"
    if "method" in data:
        if not isinstance(data["method"], str):
            return "'method' must be a string"
        if "params" in data and not isinstance(data["params"], (dict, list, type(None))):
            return "'params' must be an object or an array"
    elif "id" not in data or not ("result" in data or "error" in data):
        return "neither a request, a notification nor a response"
    return None


def _valid_id(data: Any) -> int | str | None:
    msg_id = data.get("id") if isinstance(data, dict) else None
    return msg_id if isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool) else None


def _cause(exc: JsonRpcException) -> str:
    """The first line of what made structuring fail (cattrs nests its reasons)."""
    cause = exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    detail = "; ".join(str(e) for e in getattr(cause, "exceptions", [])[:3])
    return detail or (text[0] if text else type(cause).__name__)
