"""The index folder on disk: which folder codesearch may treat as its own, and how it writes there.

A repository is untrusted input, and so is anything in it that looks like an index: a clone can
carry a `.codesearch/` holding a marker and symlinks that point at the user's files. So:

- A folder is ours only when its marker (`CACHEDIR.TAG`) carries a code that only this user's
  codesearch can make: a random nonce and its HMAC under a per-user key kept outside every
  repository. A marker written by someone else (another user, a repository's author) or by an
  older version does not verify, and such a folder is refused with a message saying what to do;
  the user's own index keeps working when the user moves or copies it.
- An index folder that is a symlink, or that holds a symlink anywhere below it, is refused
  (LanceDB would follow it); so is a folder with files tracked by git (it came with the repository).
- A new folder is made user-only (0700); an existing empty one is claimed without changing its mode;
  nothing that codesearch did not create is ever chmod'ed, written into or deleted.
- Every file written beside the tables is opened without following symlinks: notes through a
  uniquely named temporary file (O_EXCL) renamed into place, the lock with O_NOFOLLOW.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import secrets
import stat
import subprocess
import tempfile
from pathlib import Path

from codesearch.errors import CodesearchError

MARKER = "CACHEDIR.TAG"
GIT_IGNORE = ".gitignore"
_MARKER_HEAD = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This folder is a codesearch index (https://bford.info/cachedir/): it can be rebuilt.\n"
)
_CODE_PREFIX = "# codesearch-folder: "
_KEY_BYTES = 32
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_NOTE_BYTES = 1 << 20  # a note or meta.json bigger than this is not one we wrote


_OURS_HERE: set[str] = set()  # real paths of the index folders this process claimed or verified
_OUR_ENTRY = re.compile(r"db(?:-[0-9a-f]{12})?|meta\.json|write\.lock|secret-rules(?:-[0-9a-f]{16})?|vector-index\.json"
                        r"|CACHEDIR\.TAG|\.gitignore|\..+\.tmp")


class UntrustedIndexDir(CodesearchError):
    """An index location that codesearch did not make, or that could lead its writes elsewhere."""


def key_path() -> Path:
    """Where the per-user key that signs index markers lives ($XDG_STATE_HOME/codesearch/folder-key)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "codesearch" / "folder-key"


def _user_key() -> bytes:
    """The per-user key, made on first use: a private file in a private folder, created atomically
    (written under a unique name, then linked into place, so two first runs agree on one key)."""
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".folder-key.")
    try:
        os.write(fd, secrets.token_bytes(_KEY_BYTES))
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        os.unlink(temporary)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CodesearchError(f"{path} is a symlink: refusing to use it as codesearch's key") from None
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(path) from None
        raise CodesearchError(f"cannot read codesearch's key {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise CodesearchError(f"{path} must be a file of your own that only you can read (chmod 600 {path})")
        key = os.read(fd, _KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != _KEY_BYTES:
        raise CodesearchError(f"{path} is not a codesearch key: delete it and run again")
    return key


def _signature(nonce: str) -> str:
    return hmac.new(_user_key(), b"codesearch index folder\0" + nonce.encode("ascii"), hashlib.sha256).hexdigest()


def _marker_text() -> str:
    """A new marker: a random nonce and its HMAC under the user's key. Only this user's codesearch
    can make one; it stays valid when the user moves or copies the folder."""
    nonce = secrets.token_hex(16)
    return f"{_MARKER_HEAD}{_CODE_PREFIX}{nonce}.{_signature(nonce)}\n"


def _marker_verifies(path: Path) -> bool:
    text = read_small(path / MARKER)
    if text is None:
        return False
    found = [line[len(_CODE_PREFIX):].strip() for line in text.splitlines() if line.startswith(_CODE_PREFIX)]
    if len(found) != 1 or found[0].count(".") != 1:
        return False
    nonce, signature = found[0].split(".")
    return len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce) and hmac.compare_digest(
        signature, _signature(nonce)
    )


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def symlink_inside(path: Path) -> Path | None:
    """The first symlink found at or below `path` (None when there is none)."""
    if os.path.islink(path):
        return path
    for directory, dirs, files in os.walk(path, followlinks=False):
        for name in sorted(dirs + files):
            candidate = Path(directory, name)
            if os.path.islink(candidate):
                return candidate
    return None


def _tracked_by_git(path: Path) -> bool:
    """Whether git tracks any file below `path` (False when there is no git or no repository)."""
    try:
        done = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "ls-files", "-z", "--cached", "--", "."],  # never run the repo's monitor
            cwd=path, capture_output=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip(b"\0"))


def verify_index_dir(path: Path) -> None:
    """Check that an existing index folder is one codesearch made here and can be used safely;
    raise UntrustedIndexDir naming the path and the way out otherwise."""
    st = _lstat(path)
    if st is None:
        raise CodesearchError(f"no index at {path}: run `codesearch index` first")
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedIndexDir(f"index folder {path} is a symlink: refusing to use it (choose a real folder)")
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedIndexDir(f"index location {path} is a file, not a folder")
    link = symlink_inside(path)
    if link is not None:
        raise UntrustedIndexDir(f"index folder {path} holds a symlink ({link}): refusing to use it; delete the folder")
    if _tracked_by_git(path):
        raise UntrustedIndexDir(
            f"index folder {path} holds files tracked by git (it came with the repository): refusing to use it; "
            f"index elsewhere with --index, or remove it from git and delete it"
        )
    if _marker_verifies(path):
        _OURS_HERE.add(os.path.realpath(path))
        return
    if (path / MARKER).exists() or (path / "meta.json").exists():
        raise UntrustedIndexDir(
            f"{path} was not made by your codesearch (it came from elsewhere, or from a version before "
            f"signed markers): refusing to use it; delete it and run `codesearch index` again"
        )
    raise UntrustedIndexDir(
        f"{path} is not a codesearch index and is not empty: refusing to write there (choose another index_dir)"
    )


def claim_index_dir(path: Path) -> None:
    """Make the index folder (user-only), claim an empty existing one, or check that an existing one
    is ours (`verify_index_dir`); codesearch never writes in a folder it did not make."""
    st = _lstat(path)
    if st is None:
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; this folder is new and ours
    elif stat.S_ISDIR(st.st_mode) and not any(os.scandir(path)):
        pass  # an empty folder the user pointed us at: ours from now on, its mode left as it is
    elif _taken_back(path):
        pass  # deleted under this process while it wrote: what is left is its own generation files
    else:
        verify_index_dir(path)
        _ignore_for_git(path)
        return
    write_atomic(path / MARKER, _marker_text())
    _ignore_for_git(path)
    _OURS_HERE.add(os.path.realpath(path))


def _taken_back(path: Path) -> bool:
    """Whether `path` is an index folder this process claimed, that lost its marker (an `rm -rf`
    racing this process's own writes leaves its generation files without it), and that holds
    nothing but what codesearch writes, and no symlink. Another process never takes it back."""
    st = _lstat(path)
    if st is None or not stat.S_ISDIR(st.st_mode) or os.path.realpath(path) not in _OURS_HERE:
        return False
    if (path / MARKER).exists() or symlink_inside(path) is not None:
        return False
    return all(_OUR_ENTRY.fullmatch(entry.name) for entry in os.scandir(path))


def _ignore_for_git(path: Path) -> None:
    """A `.gitignore` of `*` in the index folder, so that `git add -A` never commits the index and
    `git status` does not list it (as other tools do with their cache folders)."""
    if not os.path.lexists(path / GIT_IGNORE):
        write_atomic(path / GIT_IGNORE, "# made by codesearch: this folder is a local index\n*\n")


def is_index_dir(path: Path) -> bool:
    """Whether `path` is an index folder codesearch made here (see verify_index_dir)."""
    try:
        verify_index_dir(path)
    except CodesearchError:
        return False
    return True


def write_atomic(path: Path, text: str) -> None:
    """Replace the file at `path` with `text`: written to a new uniquely named file in the same
    folder (O_EXCL, never through a symlink), then renamed over it (a crash leaves the old one)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_small(path: Path) -> str | None:
    """The text of a small regular file we wrote, read without following a symlink; None when it is
    missing, a symlink, not a regular file or too big."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_NOTE_BYTES:
            return None
        data = os.read(fd, _MAX_NOTE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def touch(path: Path) -> None:
    """Create `path` or set its mtime to now, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def open_lock(path: Path) -> int:
    """A file descriptor of the lock file at `path`, created user-only if missing, never through a
    symlink and never truncated."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedIndexDir(f"{path} is a symlink: refusing to open it") from None
        raise
