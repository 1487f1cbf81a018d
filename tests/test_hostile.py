"""Hostile input: random bytes, deep nesting, huge lines, odd encodings and line endings, symlink loops,
files that vanish or change mid-run, non-regular files, a 1 GB file and many tiny files.

Each case must end in a counted skip or a clean result, never a crash. The long trials are marked
`slow` (run with `pytest --slow`); `benchmarks/hostile.py` runs the same fuzzers with many more examples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesearch import chunking
from codesearch.chunking import LANGUAGES, ChunkResult, chunk_text
from codesearch.files import SkipFile, read_source, walk
from codesearch.indexer import build_index
from codesearch.model import Encoder, resolve_model
from codesearch.plan import plan_index
from codesearch.search import Index

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"
SAMPLES = {  # a real file of every language; tsx reads the TypeScript one
    "python": "py/retry.py", "javascript": "js/http.js", "typescript": "ts/cache.ts", "tsx": "ts/cache.ts",
    "go": "go/stack.go", "java": "java/Matrix.java", "ruby": "rb/slug.rb", "php": "php/Validator.php",
    "rust": "rs/stats.rs", "c": "c/hash.c", "cpp": "cpp/graph.cpp", "csharp": "cs/Tokenizer.cs",
}
SUFFIXES = {
    "python": ".py", "javascript": ".js", "typescript": ".ts", "tsx": ".tsx", "go": ".go", "java": ".java",
    "ruby": ".rb", "php": ".php", "rust": ".rs", "c": ".c", "cpp": ".cpp", "csharp": ".cs",
}
# One small definition per language, found by name after hostile text: (source, chunk name).
AFTER = {
    "python": ("def after():\n    return 1\n", "after"),
    "javascript": ("function after() { return 1; }\n", "after"),
    "typescript": ("function after(): number { return 1; }\n", "after"),
    "tsx": ("function after(): number { return 1; }\n", "after"),
    "go": ("func after() int { return 1 }\n", "after"),
    "java": ("class After { int after() { return 1; } }\n", "After.after"),
    "ruby": ("def after\n  1\nend\n", "after"),
    "php": ("function after() { return 1; }\n", "after"),
    "rust": ("fn after() -> i32 { 1 }\n", "after"),
    "c": ("int after(void) { return 1; }\n", "after"),
    "cpp": ("int after() { return 1; }\n", "after"),
    "csharp": ("class After { int after() { return 1; } }\n", "After.after"),
    "bash": ("after() {\n  echo 1\n}\n", "after"),
    "kotlin": ("fun after(): Int { return 1 }\n", "after"),
    "lua": ("function after()\n  return 1\nend\n", "after"),
    "scala": ("def after(): Int = 1\n", "after"),
    "swift": ("func after() -> Int { return 1 }\n", "after"),
    "zig": ("fn after() i32 {\n    return 1;\n}\n", "after"),
    "perl": ("sub after { 1 }\n", "after"),
    "julia": ("function after()\n    1\nend\n", "after"),
}
LINE_COMMENT = {"python": "#", "ruby": "#", "bash": "#", "perl": "#", "julia": "#", "lua": "--"}  # the others take "//"

# Every reason a file can be skipped for: the walk's, read_source's, the secrets filter's, the chunker's.
READ_REASONS = {"vanished", "unreadable", "too large", "binary", "not utf-8", "not a regular file", "parse timeout",
                "secret"}
SKIP_REASONS = READ_REASONS | {
    "ignored", "vendored/build dir", "nested repository", "symlink loop", "symlink", "broken symlink",
    "symlink outside root", "lock file", "data format", "minified", "generated", "name not utf-8", "untracked",
}

TOKENS = [
    "def ", "class ", "fn ", "func ", "function ", "struct ", "impl ", "namespace ", "public ", "static ",
    "<?php ", "end", "do", "=>", "->", "::", "(", ")", "{", "}", "[", "]", "<", ">", ":", ";", ",", ".", "=",
    "'", '"', "`", "/*", "*/", "//", "#", "\\", "@", "$", "\n", "\r\n", "\r", "\t", " ", "    ", "x", "f",
    "A", "1", "é", "日本", "🎉", "\0", "\ufeff", "\u2028", "\udcff",
]
codeish = st.lists(st.sampled_from(TOKENS), max_size=300).map("".join)


def sample(language: str) -> str:
    return (SAMPLE_REPO / SAMPLES[language]).read_text(encoding="utf-8")


def check_chunks(text: str, language: str) -> ChunkResult | None:
    """Chunk `text` and check what chunk_text promises; None when it was skipped as a parse timeout."""
    try:
        result = chunk_text(text, language, path="hostile")
    except SkipFile as skip:
        assert skip.reason == "parse timeout"
        return None
    lines = text.split("\n")  # lines count "\n" only
    exact = not any("\ud800" <= ch <= "\udfff" for ch in text)  # lone surrogates are not valid UTF-8
    for chunk in result.chunks:
        # "module": a block of a language without a grammar that no line names
        assert chunk.kind in ("function", "method", "class", "module") and chunk.name and chunk.language == language
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.code.strip()
        assert chunk.code.count("\n") == chunk.end_line - chunk.start_line
        assert chunk.content_hash == hashlib.sha256(chunk.code.encode("utf-8", "surrogatepass")).hexdigest()
        if exact:  # the code is the text of its lines, from an indentation or the node's start
            assert chunk.code in "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
    return result


# --- the chunker --------------------------------------------------------------------------------

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=4000), errors=st.sampled_from(["replace", "surrogateescape"]),
       language=st.sampled_from(LANGUAGES))
def test_random_bytes_chunk_cleanly(data: bytes, errors: str, language: str):
    check_chunks(data.decode("utf-8", errors), language)


@FUZZ
@given(text=codeish, language=st.sampled_from(LANGUAGES))
def test_code_like_noise_chunks_cleanly(text: str, language: str):
    check_chunks(text, language)


@FUZZ
@given(
    language=st.sampled_from(LANGUAGES),
    opener=st.sampled_from(["(", "[", "{", "function f(){", "class A{", "fn f(){", "func f(){", "if (x) {",
                            "<div>", "/*", "#{", "begin\n", "def f():\n ", "namespace N{", "[[", "'"]),
    depth=st.integers(500, 3000),
    closed=st.booleans(),
)
def test_deep_nesting_chunks_cleanly(language: str, opener: str, depth: int, closed: bool):
    closer = {"(": ")", "[": "]", "<div>": "</div>", "/*": "*/", "begin\n": "end\n", "[[": "]]", "'": "'"}
    text = opener * depth + (closer.get(opener, "}") * depth if closed else "")
    check_chunks(text, language)


@settings(FUZZ, max_examples=10)
@given(language=st.sampled_from(tuple(AFTER)), piece=codeish.map(lambda t: t.replace("\n", "")),
       length=st.integers(10_000, 60_000))
def test_huge_single_lines_chunk_cleanly(language: str, piece: str, length: int):
    line = (piece or "x") * (length // max(len(piece), 1) + 1)
    check_chunks(line, language)
    check_chunks(line + "\n" + AFTER[language][0], language)


@FUZZ
@given(
    language=st.sampled_from(tuple(SAMPLES)),
    newline=st.sampled_from(["\n", "\r\n", "\r", "\n\r"]),
    bom=st.sampled_from(["", "\ufeff", "\ufeff\ufeff"]),
    inserts=st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["\0", "\xe9", "\udce9", "\ufffd", "\r", "\x0c"])),
                     max_size=8),
)
def test_real_code_with_odd_bytes_and_line_endings(language: str, newline: str, bom: str, inserts: list):
    text = bom + sample(language).replace("\n", newline)
    for where, what in inserts:
        at = int(where * len(text))
        text = text[:at] + what + text[at:]
    result = check_chunks(text, language)
    assert result is not None
    if not inserts and newline == "\r\n":  # CRLF numbers lines as LF does
        lf = chunk_text(bom + sample(language), language)
        assert [(c.name, c.start_line, c.end_line) for c in result.chunks] == [
            (c.name, c.start_line, c.end_line) for c in lf.chunks
        ]
    if newline == "\r":  # lone CRs are no line break: everything is on line 1
        assert all(c.start_line == c.end_line == 1 for c in result.chunks)


@FUZZ
@given(language=st.sampled_from(tuple(SAMPLES)), raw=st.binary(max_size=400))
def test_latin_1_bytes_inside_utf_8(language: str, raw: bytes):
    """A UTF-8 file with a latin-1 stretch: read_source refuses it; decoded leniently, it chunks cleanly."""
    data = sample(language).encode() + "# café\n".encode("latin-1") + raw
    for errors in ("replace", "surrogateescape"):
        check_chunks(data.decode("utf-8", errors), language)


# Nested functions as each language allows them: (outer definition, what nests inside, closer).
NESTED = {
    "javascript": ("function f() {", "function g() {", "}"),
    "typescript": ("function f() {", "function g() {", "}"),
    "tsx": ("function f() {", "function g() {", "}"),
    "go": ("func f() {", "_ = func() {", "}"),
    "rust": ("fn f() {", "fn g() {", "}"),
    "ruby": ("def f\n", "def g\n", "end\n"),
    "php": ("<?php function f() {", "function g() {", "}"),
    "java": ("class C { void f() {", "Runnable r = () -> {", "};"),
    "csharp": ("class C { void f() {", "Action a = () => {", "};"),
    "c": ("void f() {", "{", "}"),
    "cpp": ("void f() {", "auto g = [] {", "};"),
}


@pytest.mark.parametrize("language", ("python", *NESTED))
def test_deeply_nested_functions_are_one_chunk(language: str):
    """Thousands of nested functions: no recursion error, and the outermost one is the only chunk."""
    if language == "python":  # one more space of indentation per level
        depth = 400
        text = "".join(" " * i + f"def f{i}():\n" for i in range(depth)) + " " * depth + "pass\n"
        expected = "f0"
    else:
        depth = 2000
        outer, inner, closer = NESTED[language]
        text = outer + inner * depth + closer * (depth + 1) + ("}" if language in ("java", "csharp") else "")
        expected = "C.f" if language in ("java", "csharp") else "f"
    result = check_chunks(text, language)
    assert result is not None
    names = [c.name for c in result.chunks if c.kind != "class"]
    assert names == [expected]


@pytest.mark.parametrize("language", tuple(AFTER))
def test_a_definition_after_a_huge_line_is_found(language: str):
    source, name = AFTER[language]
    huge = LINE_COMMENT.get(language, "//") + " x" * 150_000 + "\n"
    text = ("<?php\n" if language == "php" else "") + huge + source
    result = check_chunks(text, language)
    assert result is not None
    line = 3 if language == "php" else 2
    assert [(c.name, c.start_line) for c in result.chunks if c.name == name] == [(name, line)]


# --- the parse deadline ---------------------------------------------------------------------------

QUOTES = "'\"`" * 40_000  # 120 KB that Tree-Sitter's error recovery chews on for seconds (C#: ~20 s/MB)


def test_a_parse_past_its_allowance_is_a_skip_and_stops_promptly(monkeypatch):
    monkeypatch.setattr(chunking, "PARSE_SECONDS", 0.05)
    monkeypatch.setattr(chunking, "PARSE_SECONDS_PER_MB", 1.0)  # 0.17 s for these 120 KB
    started = time.thread_time()
    with pytest.raises(SkipFile) as err:
        chunk_text(QUOTES, "csharp", path="q.cs")
    assert time.thread_time() - started < 1.0  # the whole parse takes 2-3 s
    assert (err.value.reason, err.value.path) == ("parse timeout", "q.cs")
    # Real code within the same allowance is parsed whole, and the parser is usable afterwards.
    assert [c.name for c in chunk_text(AFTER["csharp"][0], "csharp").chunks] == ["After", "After.after"]


def test_the_default_allowance_is_ample_for_real_code():
    text = sample("cpp") * 200  # ~500 KB of real C++, parsed in well under a second
    assert chunk_text(text, "cpp").chunks


@pytest.mark.slow
def test_a_megabyte_of_quotes_times_out_at_the_default_allowance():
    # 1 MB: 7-22 s of parsing for C# on the 2-core machine, depending on its load; the allowance is
    # 12 s of CPU time. Whichever way it goes, the parse never runs much past the allowance.
    text = "'\"`" * 333_333
    started = time.thread_time()
    try:
        chunk_text(text, "csharp")
        timed_out = False
    except SkipFile as err:
        assert err.reason == "parse timeout"
        timed_out = True
    spent = time.thread_time() - started
    allowance = chunking.PARSE_SECONDS + chunking.PARSE_SECONDS_PER_MB * len(text) / 1e6
    assert spent < allowance + 2.0
    assert not timed_out or spent >= allowance


# --- reading -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=3000), codeish.map(lambda t: t.encode("utf-8", "surrogatepass"))),
       bom=st.booleans())
def test_read_source_on_random_bytes(tmp_path, data: bytes, bom: bool):
    data = (b"\xef\xbb\xbf" if bom else b"") + data
    path = tmp_path / "random.py"
    path.write_bytes(data)
    try:
        text, digest = read_source(path, max_file_bytes=2000)
    except SkipFile as skip:
        assert skip.reason in {"binary", "not utf-8", "too large"}
        return
    assert text == data.decode("utf-8-sig") and digest == hashlib.sha256(data).hexdigest()
    check_chunks(text, "python")


def test_read_source_does_not_hang_on_a_fifo(tmp_path):
    """A FIFO where the walk saw a file (or named directly): skipped, never blocked on."""
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _record(outcome, read_source, fifo), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the stuck open so that the thread can end, then fail
        _open_for_writing(fifo)
        pytest.fail("read_source blocked on a FIFO")
    assert [type(e) for e in outcome] == [SkipFile] and outcome[0].reason == "not a regular file"


def _record(outcome: list[BaseException], function, *args) -> None:
    try:
        function(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        outcome.append(exc)


def test_a_one_gigabyte_file_is_skipped_without_being_read(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    big = root / "huge.py"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: no disk used, but stat says 1 GiB
    (root / "ok.py").write_text("def ok():\n    return 1\n")
    started = time.perf_counter()
    result = walk(root)
    with pytest.raises(SkipFile, match="too large"):
        read_source(big)
    assert time.perf_counter() - started < 2.0  # reading it would take far longer
    assert [f.path for f in result.files] == ["ok.py"]
    assert result.skipped_paths == [("huge.py", "too large")]


# --- the walk on hostile trees ----------------------------------------------------------------------


def test_symlink_loops_and_links_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("def secret():\n    return 1\n")
    root = tmp_path / "repo"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "real.py").write_text("def real():\n    return 1\n")
    (root / "a.py").symlink_to("b.py")  # a -> b -> a
    (root / "b.py").symlink_to("a.py")
    (root / "a" / "b" / "up").symlink_to("..", target_is_directory=True)  # a directory link to its parent
    (root / "a" / "b" / "top").symlink_to(root, target_is_directory=True)  # ... and to the root
    (root / "x").symlink_to("y")  # a loop of directory links, no language: not code, not counted
    (root / "y").symlink_to("x")
    (root / "out.py").symlink_to(outside / "secret.py")
    (root / "rel_out.py").symlink_to("../outside/secret.py")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "dev.py").symlink_to("/dev/zero")
    (root / "broken.py").symlink_to(root / "missing.py")
    chain = root / "chain"  # 50 links deep: more than the kernel follows (ELOOP)
    chain.mkdir()
    for i in range(50):
        (chain / f"l{i}.py").symlink_to(f"l{i + 1}.py")
    (chain / "l50.py").write_text("def end():\n    return 1\n")
    result = walk(root)
    reasons = dict(result.skipped_paths)
    files = {f.path for f in result.files}
    chain_links = {f"chain/l{i}.py" for i in range(51)}
    assert files - chain_links == {"a/b/real.py"}
    assert all((p in files) != (reasons.get(p) == "symlink loop") for p in chain_links)  # one or the other
    assert (reasons["a.py"], reasons["b.py"]) == ("symlink loop", "symlink loop")
    assert reasons["a/b/up/"] == reasons["a/b/top/"] == "symlink"
    assert reasons["out.py"] == reasons["rel_out.py"] == reasons["dev.py"] == "symlink outside root"
    assert reasons["outdir/"] == "symlink outside root"
    assert reasons["broken.py"] == "broken symlink"
    assert reasons["chain/l0.py"] == "symlink loop"  # ELOOP, though the chain ends
    assert sum(result.skipped.values()) == len(result.skipped_paths)


def test_non_regular_files_are_counted(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    os.mkfifo(root / "pipe.py")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "sock.py"))
        kinds = ["pipe.py", "sock.py"]
        try:  # a character device, where we may make one (root)
            os.mknod(root / "null.py", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            kinds.append("null.py")
        except PermissionError:
            pass
        started = time.perf_counter()
        result = walk(root)
        assert time.perf_counter() - started < 5.0  # nothing blocked
    finally:
        server.close()
    assert result.files == []
    assert result.skipped_paths == sorted((name, "not a regular file") for name in kinds)


def test_names_that_are_not_utf_8_are_counted(tmp_path):
    root = tmp_path / "r"
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "fine.py").write_text("def fine():\n    return 1\n")
    raw = os.fsencode(root)
    os.mkdir(raw + b"/d\xff")
    for name in (b"/d\xff/inner.py", b"/caf\xe9.py", b"/caf\xe9.txt"):
        with open(raw + name, "wb") as f:
            f.write(b"def x():\n    return 1\n")
    result = walk(root)
    assert [f.path for f in result.files] == ["ok/fine.py"]
    assert result.skipped_paths == [("caf\\xe9.py", "name not utf-8"), ("d\\xff/", "name not utf-8")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_files_and_directories_are_counted(tmp_path):
    root = tmp_path / "r"
    (root / "locked").mkdir(parents=True)
    (root / "locked" / "a.py").write_text("x = 1\n")
    (root / "secret.py").write_text("x = 1\n")
    (root / "secret.py").chmod(0)
    (root / "locked").chmod(0)
    try:
        result = walk(root)
        with pytest.raises(SkipFile, match="unreadable"):
            read_source(root / "secret.py")
    finally:
        (root / "locked").chmod(0o700)
    assert result.skipped_paths == [("locked/", "unreadable"), ("secret.py", "unreadable")]


# --- files that vanish or change between the walk and the read, through the real indexer ------------


@pytest.fixture(scope="module")
def encoder(tiny_model) -> Encoder:
    """One encoder for the module: loading the model is the slow part of a tiny index."""
    return Encoder(resolve_model(str(tiny_model)), threads=1)


def indexed_paths(root: Path, settings) -> set[str]:
    return set(Index.open(root, settings).store.file_states())


def chunk_names(root: Path, settings) -> set[str]:
    return set(Index.open(root, settings).store.chunks.to_arrow()["name"].to_pylist())


def at_read(path: Path, action):
    """A progress callback that does `action(path)` when the indexer starts reading files."""
    done = []

    def tick(stage: str, _done: int, _total: int) -> None:
        if stage == "reading" and not done:
            done.append(True)
            action(path)

    return tick


def test_a_file_deleted_before_it_is_read_is_counted_and_loses_its_rows(repo, settings, encoder):
    build_index(repo, settings, encoder=encoder)
    target = repo / "py" / "retry.py"
    target.write_text(target.read_text() + "\n\ndef extra():\n    return 2\n")  # changed: it will be read
    report = build_index(repo, settings, encoder=encoder, progress=at_read(target, Path.unlink))
    assert report.skipped["vanished"] == 1 and ("py/retry.py", "vanished") in report.skipped_paths
    assert "py/retry.py" not in indexed_paths(repo, settings)


def test_a_file_that_changes_before_it_is_read_is_indexed_as_read(repo, settings, encoder):
    target = repo / "py" / "changing.py"
    target.write_text("def before():\n    return 1\n")
    rewrite = lambda p: p.write_text("def after_the_walk(x):\n    return x * 2\n\n\ndef another():\n    pass\n")  # noqa: E731
    first = build_index(repo, settings, encoder=encoder, progress=at_read(target, rewrite))
    assert first.skipped == Counter()
    names = chunk_names(repo, settings)
    assert {"after_the_walk", "another"} <= names and "before" not in names
    again = build_index(repo, settings, encoder=encoder)  # the stat differs from the walk's: read again
    assert (again.files_read, again.files_changed, again.chunks_embedded) == (1, 0, 0)
    assert build_index(repo, settings, encoder=encoder).files_read == 0


def test_a_file_that_grows_past_the_limit_before_it_is_read(repo, settings, encoder):
    target = repo / "py" / "grows.py"
    target.write_text("def small():\n    return 1\n")
    grow = lambda p: p.write_text("x = 1\n" * 300_000)  # noqa: E731  1.8 MB > max_file_bytes
    report = build_index(repo, settings, encoder=encoder, progress=at_read(target, grow))
    assert report.skipped_paths == [("py/grows.py", "too large")]
    assert "py/grows.py" not in indexed_paths(repo, settings)


def test_a_file_replaced_by_a_fifo_before_it_is_read(repo, settings, encoder):
    target = repo / "py" / "piped.py"
    target.write_text("def piped():\n    return 1\n")

    def to_fifo(path: Path) -> None:
        path.unlink()
        os.mkfifo(path)

    # Should the read block on the FIFO, a writer comes after 10 s to unblock it, and the test fails.
    watchdog = threading.Timer(10, lambda: _open_for_writing(target))
    watchdog.start()
    try:
        report = build_index(repo, settings, encoder=encoder, progress=at_read(target, to_fifo))
    finally:
        watchdog.cancel()
    assert report.skipped_paths == [("py/piped.py", "not a regular file")]


def _open_for_writing(fifo: Path) -> None:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting: nothing to unblock
        pass


def test_a_parse_timeout_skips_the_file_and_drops_its_old_rows(repo, settings, encoder, monkeypatch):
    target = repo / "cs" / "Tokenizer.cs"
    build_index(repo, settings, encoder=encoder)
    assert "cs/Tokenizer.cs" in indexed_paths(repo, settings)
    target.write_text(QUOTES)
    monkeypatch.setattr(chunking, "PARSE_SECONDS", 0.05)
    monkeypatch.setattr(chunking, "PARSE_SECONDS_PER_MB", 1.0)  # 0.17 s: the sample's real files fit
    report = build_index(repo, settings, encoder=encoder)
    assert report.skipped_paths == [("cs/Tokenizer.cs", "parse timeout")]
    assert "cs/Tokenizer.cs" not in indexed_paths(repo, settings)
    assert len(indexed_paths(repo, settings)) == 11
    plan = plan_index(repo, settings, measure=False)  # the plan skips it as the indexer does
    assert plan.languages["csharp"].functions == 0


# --- a fuzzed tree through the real indexer -----------------------------------------------------------

NAME_CHARS = st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=("Cs",))
names = st.one_of(
    st.text(NAME_CHARS, min_size=1, max_size=10),
    st.sampled_from(["-rf", "--help", " lead", "trail ", "it's", 'q"uote', "$(x)", "*", "a b", "ünï", "日本",
                     "🎉", "back\\slash", "tab\t", "new\nline", "..", ".hidden", "%s", "{}", "'; DROP TABLE x; --"]),
)
contents = st.one_of(
    st.binary(max_size=1500),
    codeish.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(tuple(SAMPLES)).map(lambda lang: sample(lang).encode()),
    st.sampled_from(tuple(SAMPLES)).map(lambda lang: ("\ufeff" + sample(lang).replace("\n", "\r\n")).encode()),
)
trees = st.dictionaries(
    st.tuples(st.lists(names, max_size=2).map(tuple), names, st.sampled_from([*SUFFIXES.values(), ".txt", ".json", ".min.js"])),
    contents,
    max_size=12,
)


def write_tree(root: Path, tree: dict, odd_names: bool) -> None:
    for (dirs, stem, suffix), data in tree.items():
        path = root.joinpath(*dirs, stem + suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            continue  # a name drawn both as a directory and as a file
    if odd_names:
        raw = os.fsencode(root)
        with open(raw + b"/bad\xff.py", "wb") as f:
            f.write(b"def bad():\n    return 1\n")


def check_report(root: Path, report, settings) -> set[str]:
    """Every skip counted by a known reason; the index holds exactly the walked files that could be read."""
    assert report.skipped == Counter(reason for _, reason in report.skipped_paths)
    assert set(report.skipped) <= SKIP_REASONS, report.skipped
    walked = {f.path for f in walk(root).files}
    assert report.files == len(walked)
    read_skips = {p for p, r in report.skipped_paths if r in READ_REASONS}
    indexed = indexed_paths(root, settings)
    assert indexed == walked - read_skips
    assert set(Index.open(root, settings).store.chunks.to_arrow()["path"].to_pylist()) <= indexed
    return indexed


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=trees, odd_names=st.booleans(), data=st.data())
def test_a_fuzzed_tree_indexes_cleanly(settings, encoder, tree: dict, odd_names: bool, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        write_tree(root, tree, odd_names)
        check_report(root, build_index(root, settings, encoder=encoder), settings)
        again = build_index(root, settings, encoder=encoder)
        assert (again.files_read, again.files_changed, again.files_deleted) == (0, 0, 0)
        indexed = sorted(check_report(root, again, settings))
        if indexed:  # delete one indexed file and rewrite another
            gone = data.draw(st.sampled_from(indexed))
            (root / gone).unlink()
            changed = [p for p in indexed if p != gone]
            if changed:
                (root / changed[0]).write_bytes(data.draw(contents))
            third = build_index(root, settings, encoder=encoder)
            assert third.files_deleted >= 1
            assert gone not in check_report(root, third, settings)


# --- many tiny files -------------------------------------------------------------------------------


def many_tiny_files(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{i:06d}.py").write_text(f"def f_{i}(x):\n    return x + {i}\n")


def walk_read_and_chunk(root: Path, count: int) -> dict[str, float]:
    seconds = {}
    started = time.perf_counter()
    result = walk(root)
    seconds["walk"] = time.perf_counter() - started
    assert len(result.files) == count and not result.skipped
    started = time.perf_counter()
    functions = sum(len(chunk_text(read_source(f)[0], f.language, f.path).chunks) for f in result.files)
    seconds["read+chunk"] = time.perf_counter() - started
    assert functions == count
    print(f"{count} tiny files: " + ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items()))
    return seconds


def test_ten_thousand_tiny_files(tmp_path):
    many_tiny_files(tmp_path / "repo", 10_000)
    seconds = walk_read_and_chunk(tmp_path / "repo", 10_000)
    assert seconds["walk"] < 20  # ~0.6 s on the shared 2-core machine: only a quadratic walk fails this


@pytest.mark.slow
def test_a_hundred_thousand_tiny_files(tmp_path, settings, encoder):
    root = tmp_path / "repo"
    many_tiny_files(root, 100_000)
    seconds = walk_read_and_chunk(root, 100_000)
    assert seconds["walk"] < 120
    report = build_index(root, settings, encoder=encoder)
    assert (report.files, report.chunks) == (100_000, 100_000)
    started = time.perf_counter()
    again = build_index(root, settings, encoder=encoder)
    print(f"100000 tiny files: index {report.seconds:.1f}s, no-change re-index {time.perf_counter() - started:.1f}s")
    assert again.files_read == 0
    shutil.rmtree(root)
