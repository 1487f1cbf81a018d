"""Who may talk to the language server, and which folders it serves.

- Over stdio the editor started the server: it is the same user.
- On a Unix socket (`codesearch lsp --socket`), the socket lives in a directory only the user can
  enter (private_dir), and each connection's peer credentials must show the server's own user.
- On TCP (`codesearch lsp --tcp`, loopback only), any local user can connect, so the client must
  first prove it can read a token that only the user can read (lsp.session checks it).
- Whatever the transport, a workspace folder is served only when it is a directory owned by the
  server's user: a folder the user can merely read (another user's checkout, a shared directory) is
  refused, so a client cannot make the server read code on its behalf that it could not read itself.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import struct
import tempfile
from pathlib import Path

from codesearch.errors import CodesearchError

TOKEN_BYTES = 32


def folder_refusal(path: Path, *, owned_only: bool = True) -> str | None:
    """Why the workspace folder `path` is not served; None when it is: a directory, and with
    `owned_only` (a client that connected to a listener) one the server's user owns. An editor that
    started the server on stdio runs it as its own user: it may open any folder that user can read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"not serving {path}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"not serving {path}: not a directory"
    if owned_only and info.st_uid != os.geteuid():
        return (f"not serving {path}: it belongs to uid {info.st_uid}, not to this server's user (uid {os.geteuid()}); "
                "codesearch serves only folders its user owns")
    return None


def peer_uid(conn: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (Linux); None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    raw = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def private_dir(path: Path) -> Path:
    """`path`, created 0700 if missing, once lstat shows a real directory (not a symlink) owned by this
    user with mode 0700: else a CodesearchError naming it. Sockets and token files live only there."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise CodesearchError(f"cannot create {path}: {exc.strerror}") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise CodesearchError(f"{path} is not a directory (a symlink or a file): refusing to put a socket or token there")
    if info.st_uid != os.geteuid():
        raise CodesearchError(f"{path} belongs to uid {info.st_uid}, not to you: refusing to put a socket or token there")
    if stat.S_IMODE(info.st_mode) != 0o700:
        raise CodesearchError(f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, not 0700: run `chmod 700 {path}`")
    return path


def runtime_dir() -> Path:
    """The user's private directory for sockets and tokens: $XDG_RUNTIME_DIR/codesearch when
    XDG_RUNTIME_DIR is a directory of this user's, else codesearch-<uid> in the temporary directory."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        try:
            info = os.lstat(xdg)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
                return private_dir(Path(xdg) / "codesearch")
        except OSError:
            pass
    return private_dir(Path(tempfile.gettempdir()) / f"codesearch-{os.geteuid()}")


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def write_token(path: Path, token: str) -> None:
    """Write `token` to a new file `path` (0600) in a private directory, never through a symlink."""
    private_dir(path.parent)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:  # a stale token file of an earlier server: only a plain file of ours is removed
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise CodesearchError(f"{path} exists and is not a token file of yours: remove it")
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise CodesearchError(f"cannot create the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")


def read_token(fd: int) -> str:
    """The token a listener passed to its session process through an inherited pipe."""
    with os.fdopen(fd, "rb") as pipe:
        token = pipe.read(4 * TOKEN_BYTES).decode("ascii", "replace").strip()
    if len(token) != 2 * TOKEN_BYTES:
        raise CodesearchError("the token pipe held no token")
    return token
