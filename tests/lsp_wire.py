"""A raw LSP peer for the transport and framing tests: it writes bytes exactly as given (wrong
Content-Lengths, HTTP requests) and reads the server's frames with a parser of its own.

It answers the server's own requests (progress tokens, capability registration) with null, and
keeps every message it got, so that a test can wait for the reply to one id.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pygls.uris import from_fs_path

SERVER = [sys.executable, "-m", "codesearch", "lsp"]
WAIT_S = float(os.environ.get("LSP_WIRE_WAIT_S", "60"))  # a guard against hangs, not a measure of speed


def frame(message: Any) -> bytes:
    body = json.dumps(message).encode() if not isinstance(message, bytes) else message
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Wire:
    """One connection to a server: `send`, `request`, then `reply(id)`; `closed()` after the server hung up."""

    def __init__(self, write, read) -> None:
        self._write, self._read = write, read
        self.messages: queue.Queue = queue.Queue()
        self.got: list[dict] = []
        self.eof = threading.Event()
        self._ids = iter(range(1, 1_000_000))
        threading.Thread(target=self._read_all, daemon=True).start()

    @classmethod
    def over_pipes(cls, proc: subprocess.Popen) -> Wire:
        def write(data: bytes) -> None:
            proc.stdin.write(data)
            proc.stdin.flush()

        return cls(write, proc.stdout.read1)

    @classmethod
    def over_socket(cls, sock: socket.socket) -> Wire:
        return cls(sock.sendall, sock.recv)

    def send(self, message: Any) -> None:
        self._write(frame(message))

    def send_raw(self, data: bytes) -> None:
        self._write(data)

    def request(self, method: str, params: Any = None, *, with_params: bool = True) -> int:
        msg_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if with_params:
            message["params"] = params
        self.send(message)
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def reply(self, msg_id: Any, timeout: float = WAIT_S) -> dict:
        """The server's answer to request `msg_id` (waiting for it; AssertionError if it never comes)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.got:
                if "method" not in message and message.get("id") == msg_id:
                    self.got.remove(message)  # each answer is taken once (id null ones come in order)
                    return message
            left = deadline - time.monotonic()
            assert left > 0 and not (self.eof.is_set() and self.messages.empty()), f"no reply to {msg_id}: {self.got}"
            try:
                self.got.append(self.messages.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass

    def call(self, method: str, params: Any = None, timeout: float = WAIT_S) -> dict:
        return self.reply(self.request(method, params), timeout)

    def closed(self, timeout: float = WAIT_S) -> bool:
        """Whether the server closed the connection (waiting up to `timeout` for it)."""
        return self.eof.wait(timeout)

    def initialize(self, root: Path | None, model: Path, **options: Any) -> dict:
        params = {
            "processId": None, "capabilities": {},
            "rootUri": from_fs_path(str(root)) if root else None,
            "initializationOptions": {"model": str(model), "debounceMs": 50, **options},
        }
        answer = self.call("initialize", params)
        if "result" in answer:
            self.notify("initialized", {})
        return answer

    def _read_all(self) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = self._read(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(buffer) < length:
                    data = self._read(65536)
                    if not data:
                        return
                    buffer += data
                message, buffer = json.loads(buffer[:length]), buffer[length:]
                if "method" in message and "id" in message:  # the server asks: say yes
                    self._write(frame({"jsonrpc": "2.0", "id": message["id"], "result": None}))
                self.messages.put(message)
        except OSError:
            return
        finally:
            self.eof.set()


def start_stdio(env: dict | None = None, cwd: Path | None = None) -> tuple[subprocess.Popen, Wire]:
    proc = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    return proc, Wire.over_pipes(proc)


def stop(proc: subprocess.Popen) -> str:
    """Kill `proc` if it still runs; its stderr."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(WAIT_S)
    return proc.stderr.read().decode(errors="replace") if proc.stderr else ""
