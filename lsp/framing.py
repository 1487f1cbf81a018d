"""The LSP base protocol, read strictly: a header block, a blank line, then exactly Content-Length bytes
of JSON.

pygls' own reader trusts its input: a wrong Content-Length leaves it out of step with the stream, a
body that is not JSON gets no answer, and it would read an HTTP request from a web page as a message.
This reader is the only one the server uses (lsp.session), and its rules are:

- a header line is `Name: value` ending in CRLF; the only headers are Content-Length (required,
  decimal, at most MAX_MESSAGE_BYTES) and Content-Type;
- a header block that starts with an HTTP request line (`POST / HTTP/1.1`) or names any other
  header (`Host:`, `Origin:`, ...) is not LSP: NotLsp is raised before any body is read, and the
  session closes the connection;
- bytes where a header should start (left over from a body whose Content-Length was too short) are
  skipped up to the next `Content-Length:`;
- a body that is not JSON raises BadMessage (answered with a parse error); if it holds
  `Content-Length:` (its Content-Length was too long and it swallowed the start of the next
  message), reading goes on from there;
- a message over MAX_MESSAGE_BYTES is read past without being kept, and raises BadMessage.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from typing import Any

MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the largest message body read (documented in README)
MAX_HEADER_LINE = 1024  # a longer "header" is junk to skip
PARSE_ERROR = -32700
INVALID_REQUEST = -32600

_MARKER = b"Content-Length:"
_HEADER = re.compile(rb"([A-Za-z0-9-]+):[ \t]*([^\r\n]*?)[ \t]*")
_HTTP_REQUEST = re.compile(rb"[A-Z]{3,10} \S+ HTTP/\d(\.\d)?\s*")
_READ_SIZE = 65536


class NotLsp(Exception):
    """The peer speaks another protocol (an HTTP request): the connection must be closed unanswered."""


class BadMessage(Exception):
    """A message that could not be read; answered with a JSON-RPC error of `code` (id null), then
    reading goes on with the next message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class FrameReader:
    """Messages (parsed JSON values) from a byte stream, one `message()` call each."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read  # e.g. functools.partial(os.read, fd): returns b"" at the end of the stream
        self._buf = bytearray()
        self._eof = False
        self.skipped = 0  # junk bytes skipped so far, for the log

    def message(self) -> Any | None:
        """The next message's JSON value; None at the end of the stream. Raises BadMessage, NotLsp."""
        length = self._header_block()
        if length is None:
            return None
        if length > MAX_MESSAGE_BYTES:
            self._discard(length)
            raise BadMessage(INVALID_REQUEST, f"message of {length} bytes is over the limit of {MAX_MESSAGE_BYTES} bytes")
        body = self._exactly(length)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            self._resume_inside(body)
            raise BadMessage(PARSE_ERROR, f"the message body is not JSON ({exc})") from None

    # --- header block ------------------------------------------------------------------------------

    def _header_block(self) -> int | None:
        """Read one header block; its Content-Length, or None at the end of the stream."""
        length: int | None = None
        first = True
        while True:
            raw = self._line()
            if raw is None:
                return None
            line = raw.rstrip(b"\r\n")
            if line == b"":
                if first:
                    continue  # a stray blank line between messages
                if length is None:
                    raise BadMessage(INVALID_REQUEST, "a header block without Content-Length")
                return length
            if _HTTP_REQUEST.fullmatch(line):
                raise NotLsp(f"an HTTP request ({line[:60].decode('latin-1')!r}), not LSP")
            header = _HEADER.fullmatch(line)
            if header is None:
                self._skip_junk(raw)
                length, first = None, True
                continue
            length = _header_value(header, length)
            first = False

    def _line(self) -> bytes | None:
        """The next line with its end (CRLF; a lone LF is accepted too); a line too long to be a header
        comes back cut, without an end, as junk. None at the end of the stream."""
        while True:
            end = self._buf.find(b"\n", 0, MAX_HEADER_LINE + 1)
            if end >= 0:
                line = bytes(self._buf[: end + 1])
                del self._buf[: end + 1]
                return line
            if len(self._buf) > MAX_HEADER_LINE:
                line = bytes(self._buf[:MAX_HEADER_LINE])
                del self._buf[:MAX_HEADER_LINE]
                return line
            if not self._fill():
                if self._buf:  # a last line without an end: junk
                    self.skipped += len(self._buf)
                    self._buf.clear()
                return None

    def _skip_junk(self, line: bytes) -> None:
        """`line` was not a header: drop it and what follows up to the next `Content-Length:`."""
        self._buf[:0] = line[1:]  # scanned again from its second byte: a header may start inside it
        self.skipped += 1
        keep = len(_MARKER) - 1  # the marker may straddle two reads
        while True:
            at = self._buf.find(_MARKER)
            if at >= 0:
                self.skipped += at
                del self._buf[:at]
                return
            if len(self._buf) > keep:
                self.skipped += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
            if not self._fill():
                return

    # --- bodies ------------------------------------------------------------------------------------

    def _exactly(self, n: int) -> bytes | None:
        while len(self._buf) < n:
            if not self._fill():
                return None
        body = bytes(self._buf[:n])
        del self._buf[:n]
        return body

    def _discard(self, n: int) -> None:
        """Read past `n` bytes without keeping them (an oversized message)."""
        while n > 0:
            if not self._buf and not self._fill():
                return
            step = min(n, len(self._buf))
            del self._buf[:step]
            n -= step

    def _resume_inside(self, body: bytes) -> None:
        """After a body that is not JSON: if it holds the start of another message, read that next."""
        at = body.find(_MARKER, 1)
        if at > 0:
            self._buf[:0] = body[at:]

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._read(_READ_SIZE)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True


def _header_value(header: re.Match, length: int | None) -> int | None:
    """The Content-Length so far, after one header line; NotLsp for a header LSP does not have."""
    name, value = header.group(1).lower(), header.group(2)
    if name == b"content-type":
        return length
    if name != b"content-length":
        raise NotLsp(f"a {header.group(1).decode('latin-1')!r} header, which LSP does not have")
    if not re.fullmatch(rb"\d{1,15}", value) or (length is not None and int(value) != length):
        raise BadMessage(INVALID_REQUEST, f"bad Content-Length {value[:20].decode('latin-1')!r}")
    return int(value)


class FrameWriter:
    """pygls' writer interface over a file descriptor: each whole frame in one go, under a lock, since
    replies are sent from the thread pool and the event loop at once."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def send(self, message: dict) -> None:
        """Frame and send one JSON-RPC message of our own (the session's errors)."""
        body = json.dumps(message).encode()  # ASCII: lone surrogates are escaped, not encoded
        self.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def close(self) -> None:
        """Nothing: the session ends the process, which closes the stream."""
