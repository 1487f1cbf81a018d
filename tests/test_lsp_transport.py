"""Who may connect to the language server (issue 24, item 4): a Unix socket only its user can use, a
TCP port that asks for a token, HTTP refused, one session per connection, and only folders of its
own user served. Real `codesearch lsp` processes, real sockets, a real other uid where we are root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from lsp_wire import SERVER, WAIT_S, Wire, frame, start_stdio, stop
from pygls.uris import from_fs_path

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"
OTHER_UID = 65534  # "nobody"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as, or give files to, another user")


class Listener:
    """A `codesearch lsp --socket/--tcp` process, its announced address, and its stderr lines."""

    def __init__(self, args: list[str], runtime: Path) -> None:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        self.proc = subprocess.Popen([*SERVER, *args], stderr=subprocess.PIPE, env=env)
        self.lines: list[str] = []
        self._announced = threading.Event()
        threading.Thread(target=self._collect, daemon=True).start()
        self._announced.wait(WAIT_S)
        assert self.lines, f"the listener never said where it listens (exit code {self.proc.poll()})"
        self.first = self.lines[0]

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))
            self._announced.set()
        self._announced.set()

    def connect(self) -> tuple[socket.socket, Wire]:
        if "127.0.0.1:" in self.first:
            sock = socket.create_connection(("127.0.0.1", int(re.search(r"127\.0\.0\.1:(\d+)", self.first)[1])))
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(re.search(r"listening on (\S+)", self.first)[1])
        return sock, Wire.over_socket(sock)

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(WAIT_S)


@pytest.fixture
def runtime(tmp_path) -> Path:
    """A private XDG_RUNTIME_DIR for the listeners of one test."""
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, target, ignore=shutil.ignore_patterns(".codesearch"))
    return target


def _roots(wire: Wire) -> list[str]:
    return [folder["root"] for folder in wire.call("codesearch/status", {})["result"]["folders"]]


# --- the Unix socket --------------------------------------------------------------------------------


def test_the_socket_is_private_and_each_connection_is_a_session_of_its_own(runtime, repo, tmp_path, tiny_model):
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    listener = Listener(["--socket"], runtime)
    try:
        path = runtime / "codesearch" / "lsp.sock"
        assert f"listening on {path}" in listener.first
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        first_sock, first = listener.connect()
        second_sock, second = listener.connect()
        # The same request id on both connections: each gets its own answer, about its own folder.
        assert "result" in first.initialize(repo, tiny_model) and "result" in second.initialize(other, tiny_model)
        assert first.call("codesearch/status", {}) != second.call("codesearch/status", {})
        assert _roots(first) == [str(repo.resolve())] and _roots(second) == [str(other.resolve())]
        first_sock.close()  # one client leaves: its session ends, the other's and the listener go on
        assert _roots(second) == [str(other.resolve())]
        third_sock, third = listener.connect()
        assert "result" in third.initialize(None, tiny_model) and _roots(third) == []
        third_sock.close()
        second_sock.close()
        assert listener.proc.poll() is None
    finally:
        listener.stop()
    assert not path.exists()  # the listener removes its socket


@as_root
def test_another_user_is_refused_by_peer_credentials(runtime, tiny_model):
    """Even with the directory and socket opened up to everyone, a peer of another uid gets nothing."""
    listener = Listener(["--socket"], runtime)
    try:
        path = runtime / "codesearch" / "lsp.sock"
        os.chmod(path.parent, 0o711)
        os.chmod(path, 0o666)
        got = _as_other_user(path, frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                          "params": {"processId": None, "capabilities": {}, "rootUri": None}}))
        assert got == b""  # closed at once, unanswered
        sock, wire = listener.connect()  # we still may
        assert "result" in wire.initialize(None, tiny_model)
        sock.close()
        assert any(f"refused a connection from uid {OTHER_UID}" in line for line in listener.lines), listener.lines
    finally:
        listener.stop()


def _as_other_user(path: Path, message: bytes) -> bytes:
    """Connect to `path` from a forked child running as OTHER_UID; what the server sent it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no threads; only the socket module
        status = 1
        try:
            os.close(read_end)
            os.chdir(path.parent)  # as root: the test's own temporary folders above stay closed
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(WAIT_S)
                sock.connect(path.name)
                data = b""
                try:  # a refused peer is closed with its message unread: a reset is a close too
                    sock.sendall(message)
                    while chunk := sock.recv(65536):
                        data += chunk
                except (ConnectionResetError, BrokenPipeError):
                    pass
            os.write(write_end, b"ok:" + data)
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_end, f"error:{exc!r}".encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read()
    os.waitpid(pid, 0)
    assert result.startswith(b"ok:"), result
    return result[3:]


@pytest.mark.parametrize("problem", ["mode", "symlink", "file", "owner"])
def test_a_socket_directory_that_is_not_private_is_refused(runtime, tmp_path, problem):
    where = runtime / "codesearch"
    if problem == "mode":
        where.mkdir(mode=0o755)
        os.chmod(where, 0o755)
    elif problem == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        where.symlink_to(tmp_path / "elsewhere")
    elif problem == "file":
        where.mkdir(mode=0o700)
        (where / "lsp.sock").write_text("not a socket")
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory to another user")
        where.mkdir(mode=0o700)
        os.chown(where, OTHER_UID, OTHER_UID)
    done = subprocess.run([*SERVER, "--socket"], capture_output=True, text=True, timeout=WAIT_S,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("codesearch: error: ") and str(where) in line and "Traceback" not in done.stderr


def test_a_stale_socket_is_replaced_and_a_live_one_is_not(runtime, tiny_model):
    path = runtime / "codesearch" / "lsp.sock"
    path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a dead server's socket file: nobody listens
    listener = Listener(["--socket", str(path)], runtime)
    try:
        assert f"listening on {path}" in listener.first
        done = subprocess.run([*SERVER, "--socket", str(path)], capture_output=True, text=True, timeout=WAIT_S)
        assert done.returncode == 2 and f"another server is listening on {path}" in done.stderr
        sock, wire = listener.connect()
        assert "result" in wire.initialize(None, tiny_model)
        sock.close()
    finally:
        listener.stop()


# --- TCP: loopback and a token ----------------------------------------------------------------------


@pytest.fixture
def tcp(runtime):
    listener = Listener(["--tcp", "--port", "0"], runtime)
    yield listener
    listener.stop()


def _token(listener: Listener) -> str:
    path = Path(re.search(r"token in (\S+)", listener.first)[1])
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    return path.read_text().strip()


@pytest.mark.parametrize("first", ["no-token", "wrong-token", "not-initialize", "notification"])
def test_tcp_refuses_a_client_without_the_token(tcp, repo, tiny_model, first):
    token = _token(tcp)
    sock, wire = tcp.connect()
    with sock:
        if first == "no-token":
            answer = wire.initialize(repo, tiny_model)
        elif first == "wrong-token":
            answer = wire.initialize(repo, tiny_model, token="0" * len(token))
        elif first == "not-initialize":
            answer = wire.call("codesearch/status", {"token": token})
        else:
            wire.notify("initialized", {"token": token})
            answer = wire.reply(None)
        assert answer["error"]["code"] == -32600 and "token" in answer["error"]["message"]
        assert wire.closed()
    assert not (repo / ".codesearch").exists()  # nothing of the workspace was opened


def test_tcp_serves_a_client_with_the_token_and_keeps_it_out_of_sight(tcp, repo, tiny_model):
    token = _token(tcp)
    sock, wire = tcp.connect()
    with sock:
        assert "result" in wire.initialize(repo, tiny_model, token=token)
        assert _roots(wire) == [str(repo.resolve())]
        assert not any("token" in m.get("params", {}).get("message", "") for m in wire.got if "method" in m)
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # not in any process's argv
        try:
            assert token.encode() not in cmdline.read_bytes()
        except OSError:
            continue
    listening = _tcp_listening(tcp.proc.pid)
    assert listening and all(address == "0100007F" for address in listening)  # 127.0.0.1 only


def _tcp_listening(pid: int) -> list[str]:
    inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(fd).startswith("socket:[")}
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [row[1].split(":")[0] for row in rows if row[3] == "0A" and row[9] in inodes]


def test_tcp_refuses_http_before_reading_its_body(tcp, tiny_model):
    """A web page can POST to localhost: even with a valid initialize (and token) as body, nothing is read."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "processId": None, "capabilities": {}, "initializationOptions": {"token": _token(tcp)}}}).encode()
    for request in (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n",
                    b"Content-Length: %d\r\nOrigin: http://evil.example\r\n" % len(body)):
        sock, wire = tcp.connect()
        with sock:
            wire.send_raw(request + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert wire.closed()
            assert wire.messages.empty()
    sock, wire = tcp.connect()  # the listener is still there for a real client
    with sock:
        assert "result" in wire.initialize(None, tiny_model, token=_token(tcp))


# --- which folders are served ----------------------------------------------------------------------


@as_root
def test_a_folder_the_user_can_read_but_does_not_own_is_not_served(runtime, repo, tmp_path, tiny_model):
    foreign = tmp_path / "foreign"
    shutil.copytree(repo, foreign)
    for path in (foreign, *foreign.rglob("*")):
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    listener = Listener(["--socket"], runtime)
    sock, wire = listener.connect()
    try:
        answer = wire.call("initialize", {
            "processId": None, "capabilities": {}, "rootUri": from_fs_path(str(foreign)),
            "workspaceFolders": [{"uri": from_fs_path(str(foreign)), "name": "foreign"},
                                 {"uri": from_fs_path(str(repo)), "name": "mine"}],
            "initializationOptions": {"model": str(tiny_model)},
        })
        assert "result" in answer
        wire.notify("initialized", {})
        assert _roots(wire) == [str(repo.resolve())]
        added = {"event": {"added": [{"uri": from_fs_path(str(foreign)), "name": "foreign"}], "removed": []}}
        wire.notify("workspace/didChangeWorkspaceFolders", added)
        assert _roots(wire) == [str(repo.resolve())]
        shown = _messages(wire, "window/showMessage", 2)
        assert all(f"not serving {foreign}" in m and f"uid {OTHER_UID}" in m for m in shown), shown
    finally:
        sock.close()
        listener.stop()
    assert not (foreign / ".codesearch").exists()


@as_root
def test_an_editor_on_stdio_may_open_any_folder_its_user_can_read(repo, tmp_path, tiny_model):
    # The editor started the server as its own user (a root dev container on a bind-mounted checkout).
    foreign = tmp_path / "foreign"
    shutil.copytree(repo, foreign)
    for path in (foreign, *foreign.rglob("*")):
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    proc, wire = start_stdio()
    try:
        assert "result" in wire.initialize(foreign, tiny_model)
        assert _roots(wire) == [str(foreign.resolve())]
    finally:
        stop(proc)


def _messages(wire: Wire, method: str, count: int) -> list[str]:
    """The first `count` messages of notifications `method` (waiting for them)."""
    found = [m["params"]["message"] for m in wire.got if m.get("method") == method]
    while len(found) < count:
        message = wire.messages.get(timeout=WAIT_S)
        wire.got.append(message)
        if message.get("method") == method:
            found.append(message["params"]["message"])
    return found
