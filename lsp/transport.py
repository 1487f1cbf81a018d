"""The listening transports of `codesearch lsp`: a Unix socket, or a TCP port on loopback.

The listener reads no message itself. It checks who connected (on the Unix socket, the peer's
credentials must show this user), then starts one session process, `python -m codesearch lsp`, with
the connection as its stdin and stdout; over TCP it also hands that process the token on an
inherited pipe (never in argv or the environment of a file others can read), and the session asks
the client for it first (lsp.session). So each client has a server of its own: its own replies, its
own workspace folders, and a closed connection ends only its session while the listener goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from codesearch.errors import CodesearchError
from lsp.access import new_token, peer_uid, private_dir, runtime_dir, write_token

log = logging.getLogger("codesearch.lsp")

MAX_SESSIONS = 16  # connections served at once; more are closed at once
ACCEPT_POLL_S = 1.0  # how often the listener looks for ended sessions while no one connects


def serve_unix(path: str) -> None:
    """Listen on the Unix socket `path` ("" for the default, runtime_dir()/lsp.sock) until stopped."""
    _stop_on_sigterm()
    where = Path(path).absolute() if path else runtime_dir() / "lsp.sock"
    listener = bind_unix(where)
    inode = os.stat(where).st_ino
    _announce(f"listening on {where} (only uid {os.geteuid()} may connect)")
    try:
        _serve(listener, _refuse_other_users, token=None)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            if os.lstat(where).st_ino == inode:  # still ours: leave nothing behind
                os.unlink(where)


def serve_tcp(host: str, port: int) -> None:
    """Listen on `host`:`port` (loopback) until stopped; clients must present the token first."""
    _stop_on_sigterm()
    try:
        listener = socket.create_server((host, port))
    except OSError as exc:
        raise CodesearchError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    port = listener.getsockname()[1]
    token = new_token()
    token_file: Path | None = None  # set once written: only a file we made is removed
    try:
        where = runtime_dir() / f"lsp-{port}.token"
        write_token(where, token)
        token_file = where
        _announce(f"listening on {host}:{port}; a client must send the token in {where} "
                  "as initializationOptions.token")
        _serve(listener, None, token=token)
    finally:
        listener.close()
        if token_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(token_file)


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at `path` (mode 0600), in a private directory; a stale socket of ours
    left by a dead server is replaced, anything else at `path` is an error."""
    private_dir(path.parent)
    _remove_stale_socket(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    except OSError as exc:
        listener.close()
        raise CodesearchError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    listener.listen(MAX_SESSIONS)
    return listener


def _remove_stale_socket(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.geteuid():
        raise CodesearchError(f"{path} exists and is not a socket of yours: remove it or choose another --socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # nobody listens: a dead server's
            return
        except OSError as exc:
            raise CodesearchError(f"cannot tell whether a server listens on {path}: {exc.strerror}") from None
    raise CodesearchError(f"another server is listening on {path}")


def _refuse_other_users(conn: socket.socket) -> str | None:
    uid = peer_uid(conn)
    if uid is not None and uid != os.geteuid():
        return f"refused a connection from uid {uid}: only uid {os.geteuid()} may connect"
    return None


def _serve(listener: socket.socket, refusal: Callable[[socket.socket], str | None] | None, token: str | None) -> None:
    """Accept connections until stopped (SIGTERM, Ctrl-C); each accepted one gets a session process."""
    listener.settimeout(ACCEPT_POLL_S)
    sessions: list[subprocess.Popen] = []
    try:
        while True:
            sessions = [s for s in sessions if s.poll() is None]
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                why = refusal(conn) if refusal is not None else None
                if why is None and len(sessions) >= MAX_SESSIONS:
                    why = f"refused a connection: {MAX_SESSIONS} sessions are open"
                if why is not None:
                    log.warning("%s", why)
                    continue
                sessions.append(_start_session(conn, token))
    except KeyboardInterrupt:
        pass
    finally:
        for session in sessions:
            session.terminate()


def _start_session(conn: socket.socket, token: str | None) -> subprocess.Popen:
    """`python -m codesearch lsp` over `conn`, with `token` (if any) on a pipe only it holds."""
    argv = [sys.executable, "-m", "codesearch", "lsp", "--listened"]  # a connected client: folders it owns only
    if token is None:
        return subprocess.Popen(argv, stdin=conn.fileno(), stdout=conn.fileno())
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, token.encode())
        os.close(write_end)
        return subprocess.Popen([*argv, "--token-fd", str(read_end)], stdin=conn.fileno(), stdout=conn.fileno(),
                                pass_fds=(read_end,))
    finally:
        os.close(read_end)


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the socket and token files are removed (set before they exist)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _announce(line: str) -> None:
    print(f"codesearch lsp: {line}", file=sys.stderr, flush=True)
