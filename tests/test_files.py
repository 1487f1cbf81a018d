"""files.py on real trees: ignore rules checked against real git, skips, symlinks, and safe reading."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesearch import files
from codesearch.errors import CodesearchError
from codesearch.files import SkipFile, file_digest, read_source, walk

# Markers are assembled so that this file does not look generated to the walk itself.
AT_GENERATED = "@" + "generated"
DO_NOT_EDIT = "DO NOT" + " EDIT"

# git with no user or system configuration, so a global excludesFile cannot change the answer.
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "HOME": os.devnull}


@pytest.fixture(autouse=True, scope="module")
def _isolated_git_config():
    """The walk asks git for core.excludesFile: give it the same empty configuration as GIT_ENV."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "HOME", "XDG_CONFIG_HOME"):
            patch.setenv(name, GIT_ENV.get(name, os.devnull))
        yield


def make_tree(root: Path, tree: dict[str, str | bytes]) -> Path:
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, newline="")
    return root


def git_python_files(root: Path) -> set[str]:
    """What git would track under root: the answer walk must agree with."""
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True, env=GIT_ENV)
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--others", "--cached", "--exclude-standard"],
        check=True, env=GIT_ENV, capture_output=True,
    ).stdout.decode()
    return {p for p in out.split("\0") if p.endswith(".py")}


def walked(root: Path, **options) -> set[str]:
    return {f.path for f in walk(root, **options).files}


# Each layout: (files, the .py paths git keeps). The expected set is written out so that a reader sees
# the rule at work; the test also checks it against git itself.
GIT_LAYOUTS = {
    "nested gitignore": (
        {
            ".gitignore": "*.tmp.py\nlogs/\n",
            "a/.gitignore": "secret.py\n",
            "secret.py": "", "a/secret.py": "", "a/b/secret.py": "", "a/ok.py": "",
            "logs/x.py": "", "a/logs/y.py": "", "x.tmp.py": "",
        },
        {"secret.py", "a/ok.py"},
    ),
    "negation": (
        {".gitignore": "*.py\n!keep.py\n", "keep.py": "", "drop.py": "",
         "sub/keep.py": "", "sub/drop.py": ""},
        {"keep.py", "sub/keep.py"},
    ),
    "directory-only rule": (
        {".gitignore": "gen.py/\ncache/\n", "gen.py": "", "sub/gen.py/inner.py": "", "cache/x.py": "",
         "cache.py": ""},
        {"gen.py", "cache.py"},
    ),
    "anchored rules": (
        {
            ".gitignore": "/top.py\n/only_root/\nsrc/lib.py\n",
            "top.py": "", "sub/top.py": "", "only_root/a.py": "", "sub/only_root/a.py": "",
            "src/lib.py": "", "x/src/lib.py": "",
        },
        {"sub/top.py", "sub/only_root/a.py", "x/src/lib.py"},
    ),
    "double star": (
        {
            ".gitignore": "**/gen/\na/**/z.py\ndocs/**\n!docs/keep.py\nq/**/\n",
            "gen/a.py": "", "x/gen/b.py": "", "x/gen.py": "", "a/z.py": "", "a/q/r/z.py": "",
            "docs/a.py": "", "docs/keep.py": "", "docs/sub/c.py": "", "q/top.py": "", "q/deep/d.py": "",
        },
        {"x/gen.py", "docs/keep.py", "q/top.py"},
    ),
    "info/exclude, overridden by a .gitignore": (
        {
            ".git/info/exclude": "private.py\nlocal/\n", "sub/.gitignore": "!private.py\n",
            "private.py": "", "sub/private.py": "", "local/x.py": "", "ok.py": "",
        },
        {"sub/private.py", "ok.py"},
    ),
    "negation inside an excluded directory stays excluded": (
        {
            ".gitignore": "out/\n!out/keep.py\nstuff\n!stuff/inner/\n", "out/.gitignore": "!keep.py\n",
            "out/keep.py": "", "out/y.py": "", "stuff/inner/a.py": "", "ok.py": "",
        },
        {"ok.py"},
    ),
    "a subdirectory overrides its parent": (
        {
            ".gitignore": "*.gen.py\n", "sub/.gitignore": "!*.gen.py\nroot_only.py\n",
            "a.gen.py": "", "sub/b.gen.py": "", "sub/deeper/c.gen.py": "",
            "root_only.py": "", "sub/root_only.py": "",
        },
        {"sub/b.gen.py", "sub/deeper/c.gen.py", "root_only.py"},
    ),
    "trailing spaces, comments, escapes, CRLF": (
        {
            ".gitignore": "trail.py   \n\\#hash.py\n# comment.py\n\\!bang.py\ncrlf.py\r\n[ab]x.py\n?y.py\n",
            "trail.py": "", "#hash.py": "", "comment.py": "", "!bang.py": "", "crlf.py": "",
            "ax.py": "", "cx.py": "", "zy.py": "", "zzy.py": "",
        },
        {"comment.py", "cx.py", "zzy.py"},
    ),
    "allow-list idiom, and a re-included directory": (
        {
            ".gitignore": "*\n!*/\n!*.py\n", "sub/.gitignore": "keep.py\nb/\n!b/\n",
            "a.py": "", "notes.txt": "", "src/b.py": "", "src/data/c.py": "",
            "sub/keep.py": "", "sub/b/keep.py": "", "sub/b/other.py": "",
        },
        {"a.py", "src/b.py", "src/data/c.py", "sub/b/other.py"},
    ),
}


@pytest.mark.parametrize("name", GIT_LAYOUTS)
def test_ignore_rules_agree_with_git(tmp_path, name):
    tree, expected = GIT_LAYOUTS[name]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=GIT_ENV)
    make_tree(tmp_path, tree)
    assert git_python_files(tmp_path) == expected  # the fixture says what git says
    assert walked(tmp_path) == expected


NAMES = ["a", "b", "c.py", "d.py"]
PATTERN = st.builds(
    lambda bang, slash, segments, trailing: bang + slash + "/".join(segments) + trailing,
    st.sampled_from(["", "!"]),
    st.sampled_from(["", "/"]),
    st.lists(st.sampled_from(["a", "b", "*", "**", "c.py", "*.py", "?.py"]), min_size=1, max_size=3),
    st.sampled_from(["", "/"]),
)
PATH = st.lists(st.sampled_from(NAMES[:2]), max_size=2).flatmap(
    lambda dirs: st.sampled_from(NAMES[2:]).map(lambda leaf: "/".join([*dirs, leaf]))
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.sets(PATH, min_size=1, max_size=8),
    root_rules=st.lists(PATTERN, max_size=4),
    sub_rules=st.lists(PATTERN, max_size=3),
)
def test_random_ignore_files_agree_with_git(paths, root_rules, sub_rules):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree = {p: "" for p in paths}
        tree[".gitignore"] = "\n".join(root_rules) + "\n"
        tree["a/.gitignore"] = "\n".join(sub_rules) + "\n"
        make_tree(root, tree)
        assert walked(root) == git_python_files(root)


def test_codesearchignore_is_read_after_gitignore_and_can_re_include(tmp_path):
    make_tree(tmp_path, {
        ".gitignore": "gen.py\n",
        ".codesearchignore": "!gen.py\ntests/\n",
        "lib/.codesearchignore": "slow.py\n",
        "gen.py": "", "tests/t.py": "", "lib/slow.py": "", "lib/fast.py": "",
    })
    assert walked(tmp_path) == {"gen.py", "lib/fast.py"}


def test_other_tools_ignore_files_are_not_obeyed(tmp_path):
    make_tree(tmp_path, {".dockerignore": "*.py\n", ".npmignore": "*.py\n", ".ignore": "*.py\n", "a.py": ""})
    assert walked(tmp_path) == {"a.py"}


def test_extra_ignores_are_relative_to_root_and_win_over_ignore_files(tmp_path):
    make_tree(tmp_path, {
        ".codesearchignore": "!*_test.py\n",
        "docs/a.py": "", "src/docs/b.py": "", "a_test.py": "", "src/c.py": "",
    })
    assert walked(tmp_path, extra_ignores=["/docs/", "*_test.py"]) == {"src/docs/b.py", "src/c.py"}


def test_vendored_and_build_dirs_are_counted_and_can_be_brought_back(tmp_path):
    make_tree(tmp_path, {
        "node_modules/pkg/index.js": "", "build/x.py": "", "src/__pycache__/m.py": "",
        "vendor/lib.go": "package lib\n", "main.go": "package main\n",
    })
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["main.go"]
    assert result.skipped["vendored/build dir"] == 4
    assert ("node_modules/", "vendored/build dir") in result.skipped_paths

    (tmp_path / ".codesearchignore").write_text("!vendor/\n")
    assert walked(tmp_path) == {"main.go", "vendor/lib.go"}


def test_git_dir_and_index_dir_are_never_walked(tmp_path):
    make_tree(tmp_path, {".git/hooks/h.py": "", ".codesearch/c.py": "", "sub/.git": "gitdir: x\n"})
    (tmp_path / "a.py").write_text("")
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["a.py"]
    assert not result.skipped


def test_ignored_code_is_counted_but_other_files_are_not(tmp_path):
    make_tree(tmp_path, {
        ".gitignore": "old.py\nlogs/\n*.txt\n", "old.py": "", "logs/a.log": "", "n.txt": "", "README.md": "",
    })
    result = walk(tmp_path)
    assert result.files == []
    assert result.skipped_paths == [("logs/", "ignored"), ("old.py", "ignored")]


def test_languages_filter(tmp_path):
    make_tree(tmp_path, {"a.py": "", "b.go": "package b\n", "c.js": ""})
    assert walked(tmp_path, languages={"python", "go"}) == {"a.py", "b.go"}


def test_source_file_records_and_sorted_output(tmp_path):
    make_tree(tmp_path, {"z.py": "x = 1\n", "a/b.py": "", "a/a.py": "", "A.py": ""})
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["A.py", "a/a.py", "a/b.py", "z.py"]
    z = result.files[-1]
    st_z = (tmp_path / "z.py").stat()
    assert (z.size, z.mtime_ns, z.language) == (6, st_z.st_mtime_ns, "python")
    assert z.abs_path.read_text() == "x = 1\n"


def test_not_a_directory_is_an_error(tmp_path):
    with pytest.raises(CodesearchError, match="not a directory"):
        walk(tmp_path / "missing")


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("app.min.js", "var a=1;\n", "minified"),
    ("bundle.js", "var a=1;" * 200 + "\n", "minified"),
    ("package-lock.json", "{}\n", "lock file"),
    ("go.sum", "x\n", "lock file"),
    ("api_pb2.py", f"# {AT_GENERATED} by protoc\n", "generated"),
    ("zz.go", f"// Code generated by stringer; {DO_NOT_EDIT}.\n\npackage x\n", "generated"),
    ("Form.cs", "// <auto-" + "generated>\n//   This code was generated.\n", "generated"),
    ("gen.ts", f"/* {DO_NOT_EDIT} */\nexport const a = 1;\n", "generated"),
    ("blob.py", b"x = 1\0\0\0", "binary"),
])
def test_data_and_generated_files_are_counted(tmp_path, name, content, reason):
    make_tree(tmp_path, {name: content, "ok.js": "var a = 1;\n" * 200})
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["ok.js"]
    assert result.skipped_paths == [(name, reason)]


def test_do_not_edit_below_the_top_is_not_a_marker(tmp_path):
    make_tree(tmp_path, {"a.py": "\n" * 10 + f"# {DO_NOT_EDIT} the constant below\nX = 1\n"})
    assert walked(tmp_path) == {"a.py"}


def test_this_code_is_not_taken_for_generated():
    assert not files.looks_generated(Path(files.__file__).read_bytes())
    assert not files.looks_generated(Path(__file__).read_bytes())


def test_a_large_file_is_skipped_from_its_size(tmp_path):
    with open(tmp_path / "huge.py", "wb") as f:
        f.truncate(10_000_000)  # sparse: 10 MB by stat, no time spent writing it
    (tmp_path / "small.py").write_text("x = 1\n")
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["small.py"]
    assert result.skipped_paths == [("huge.py", "too large")]
    assert walked(tmp_path, max_file_bytes=3) == set()


def test_symlinks_stay_inside_the_root_and_loops_end(tmp_path):
    outside = make_tree(tmp_path / "outside", {"secret.py": "", "lib/x.py": ""})
    root = make_tree(tmp_path / "root", {"real/a.py": ""})
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "real" / "up").symlink_to("..", target_is_directory=True)
    (root / "alias.py").symlink_to(root / "real" / "a.py")
    (root / "out.py").symlink_to(outside / "secret.py")
    (root / "outlib").symlink_to(outside / "lib", target_is_directory=True)
    (root / "ping.py").symlink_to(root / "pong.py")
    (root / "pong.py").symlink_to(root / "ping.py")
    (root / "gone.py").symlink_to(root / "missing.py")

    result = walk(root)
    assert [f.path for f in result.files] == ["alias.py", "real/a.py"]
    assert result.files[0].abs_path == root.resolve() / "alias.py"
    assert result.skipped_paths == [
        ("gone.py", "broken symlink"),
        ("loop/", "symlink"),
        ("out.py", "symlink outside root"),
        ("outlib/", "symlink outside root"),
        ("ping.py", "symlink loop"),
        ("pong.py", "symlink loop"),
        ("real/up/", "symlink"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_directory_are_counted(tmp_path):
    make_tree(tmp_path, {"locked.py": "x = 1\n", "closed/a.py": "", "ok.py": ""})
    (tmp_path / "locked.py").chmod(0)
    (tmp_path / "closed").chmod(0)
    try:
        result = walk(tmp_path)
        with pytest.raises(SkipFile) as err:
            read_source(tmp_path / "locked.py")
    finally:
        (tmp_path / "locked.py").chmod(0o644)
        (tmp_path / "closed").chmod(0o755)
    assert [f.path for f in result.files] == ["ok.py"]
    assert result.skipped_paths == [("closed/", "unreadable"), ("locked.py", "unreadable")]
    assert err.value.reason == "unreadable"


def test_a_file_that_vanishes_during_the_walk_is_counted(tmp_path, monkeypatch):
    make_tree(tmp_path, {"gone.py": "", "kept.py": ""})
    real_scandir = os.scandir

    class ListThenDelete:
        """The filesystem changing under the walk: gone.py disappears just after it was listed."""

        def __init__(self, path):
            self.entries = list(real_scandir(path))
            (tmp_path / "gone.py").unlink(missing_ok=True)

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", ListThenDelete)
    result = walk(tmp_path)
    assert [f.path for f in result.files] == ["kept.py"]
    assert result.skipped_paths == [("gone.py", "vanished")]


@pytest.mark.parametrize(("content", "reason"), [
    (b"a = 1\0", "binary"),
    (b"s = '\xff\xfe'\n", "not utf-8"),
    (b"x" * 101, "too large"),
])
def test_read_source_refuses(tmp_path, content, reason):
    path = tmp_path / "f.py"
    path.write_bytes(content)
    with pytest.raises(SkipFile) as err:
        read_source(path, max_file_bytes=100)
    assert err.value.reason == reason
    assert str(path) in str(err.value)


def test_read_source_on_a_directory_or_a_removed_file(tmp_path):
    with pytest.raises(SkipFile) as err:
        read_source(tmp_path)
    assert err.value.reason == "unreadable"
    path = make_tree(tmp_path, {"a.py": "x\n"}) / "a.py"
    (source,) = walk(tmp_path).files
    path.unlink()
    with pytest.raises(SkipFile) as err:
        read_source(source)
    assert err.value.reason == "vanished"


def test_read_source_strips_only_the_bom(tmp_path):
    raw = b"\xef\xbb\xbfname = 'caf\xc3\xa9'\r\nx = 1\n"
    path = tmp_path / "a.py"
    path.write_bytes(raw)
    text, digest = read_source(path)
    assert text == "name = 'café'\r\nx = 1\n"
    assert digest == hashlib.sha256(raw).hexdigest() == file_digest(path)


def test_file_digest_streams_large_files(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3_000_000)
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


# --- scope_of: one path judged as the walk judges it ---------------------------------------------


@pytest.mark.parametrize("name", GIT_LAYOUTS)
def test_scope_of_agrees_with_walk_on_every_path(tmp_path, name):
    tree, _ = GIT_LAYOUTS[name]
    make_tree(tmp_path, {**tree, "vendor/lib.py": "", "big.py": "x" * 50, "Cargo.lock": "", "bin.py": b"\0"})
    result = walk(tmp_path, max_file_bytes=40)
    kept = {f.path: f for f in result.files}
    reasons = dict(result.skipped_paths)
    for rel in tree | {"vendor/lib.py": "", "big.py": "", "Cargo.lock": "", "bin.py": ""}:
        if rel.startswith(".git/"):
            continue
        verdict = files.scope_of(tmp_path, rel, max_file_bytes=40)
        if rel in kept:
            assert verdict == kept[rel], rel
        else:
            expected = reasons.get(rel) or next(
                (r for p, r in reasons.items() if p.endswith("/") and rel.startswith(p)), files.NOT_CODE
            )
            assert verdict == expected, rel


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("gone.py", "vanished"),
        ("src/gone.py", "vanished"),
        ("../outside.py", "outside root"),
        ("/etc/passwd", "outside root"),
        (".codesearch/x.py", files.NOT_CODE),
        (".git/hooks/x.py", files.NOT_CODE),
        ("notes.txt", files.NOT_CODE),
        ("src", files.NOT_CODE),
        ("a.py/inner.py", "vanished"),
    ],
)
def test_scope_of_reasons(tmp_path, path, reason):
    make_tree(tmp_path, {"a.py": "", "notes.txt": "", "src/b.py": "", ".codesearch/x.py": "", ".git/hooks/x.py": ""})
    assert files.scope_of(tmp_path, path) == reason


def test_scope_of_respects_extra_ignores_and_languages(tmp_path):
    make_tree(tmp_path, {"a.py": "", "b.go": "", "gen/c.py": ""})
    assert files.scope_of(tmp_path, "gen/c.py", extra_ignores=["gen/"]) == "ignored"
    assert files.scope_of(tmp_path, "b.go", languages={"python"}) == files.NOT_CODE
    assert files.scope_of(tmp_path, "a.py", languages={"python"}).language == "python"
