"""Pinned PyPI and Debian sources: pins parsed strictly, archives unpacked safely, pip and apt-get called
for real against a local wheel folder (PIP_NO_INDEX + PIP_FIND_LINKS) and a local file: repository
(APT_CONFIG), no network, and the data stage reading the result."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from codesearch.errors import CodesearchError
from trainer.data import build_dataset, resolve_sources
from trainer.jsonl import read_jsonl
from trainer.fetch import fetch, parse_pin, unpack
from trainer.recipe import DataConfig, Recipe

MODULE = '''
def parse_header_line(line):
    """Split one HTTP header line into its lowercased name and stripped value."""
    name, _, value = line.partition(":")
    name = name.strip().lower()
    return name, value.strip()


def retry_with_backoff(call, attempts=5, base=0.5):
    """Call a function until it succeeds, sleeping twice as long after each failure."""
    import time
    for attempt in range(attempts):
        try:
            return call()
        except OSError:
            time.sleep(base * 2 ** attempt)
    return call()
'''


def write_wheel(folder: Path, name: str = "tinyutil", version: str = "1.2.0") -> Path:
    """A minimal but valid pure-Python wheel, as a build backend would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", MODULE)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    wheels = tmp_path / "wheels"
    write_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return wheels


@pytest.mark.parametrize("kind, spec, expected", [
    ("pypi", "more-itertools==11.2.1", ("more-itertools", "11.2.1")),
    ("pypi", " boltons==26.2.0 ", ("boltons", "26.2.0")),
    ("npm", "lodash@4.18.1", ("lodash", "4.18.1")),
    ("npm", "@babel/parser@7.26.0", ("@babel/parser", "7.26.0")),
])
def test_pins(kind, spec, expected):
    assert parse_pin(kind, spec) == expected


@pytest.mark.parametrize("kind, spec", [("pypi", "boltons"), ("pypi", "boltons>=26"), ("npm", "lodash"),
                                        ("npm", "lodash@^4.0.0"), ("pypi", "x==1; rm -rf /")])
def test_an_unpinned_source_is_refused(kind, spec):
    with pytest.raises(CodesearchError, match="pin an exact version"):
        parse_pin(kind, spec)


def test_recipe_reads_pinned_package_sources(tmp_path):
    recipe = Recipe.from_dict({"name": "r", "data": {"sources": [
        {"pypi": "boltons==26.2.0"}, {"pypi": "zstandard==0.25.0", "sdist": True, "repo": "zstd-c", "optional": True},
        {"npm": "lodash@4.18.1"}], "valid_repos": ["lodash"]}})
    kinds = [(s["kind"], s["repo"], s["version"], s["sdist"], s["optional"]) for s in recipe.data.sources]
    assert kinds == [("pypi", "boltons", "26.2.0", False, False), ("pypi", "zstd-c", "0.25.0", True, True),
                     ("npm", "lodash", "4.18.1", False, False)]
    assert recipe.data.valid_repos == ["lodash"]
    with pytest.raises(CodesearchError, match="pin an exact version"):
        Recipe.from_dict({"name": "r", "data": {"sources": [{"npm": "lodash"}]}})
    with pytest.raises(CodesearchError, match="unknown"):
        Recipe.from_dict({"name": "r", "data": {"sources": [{"npm": "lodash@4.18.1", "sdist": True}]}})


def test_unpack_wheel_and_tarball(tmp_path):
    wheel = write_wheel(tmp_path / "w")
    unpack(wheel, tmp_path / "a")
    assert "retry_with_backoff" in (tmp_path / "a" / "tinyutil" / "__init__.py").read_text()
    tgz = tmp_path / "pkg-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        data = b"/** Add two numbers. */\nfunction add(a, b) {\n  return a + b;\n}\n"
        member = tarfile.TarInfo("package/index.js")
        member.size = len(data)
        t.addfile(member, io.BytesIO(data))
    unpack(tgz, tmp_path / "b")
    assert (tmp_path / "b" / "package" / "index.js").read_bytes().startswith(b"/** Add")


def test_unpack_refuses_members_that_leave_the_folder(tmp_path):
    evil = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.py", "x = 1\n")
    with pytest.raises(CodesearchError, match="outside"):
        unpack(evil, tmp_path / "out")
    assert not (tmp_path / "outside.py").exists()
    tgz = tmp_path / "evil.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        member = tarfile.TarInfo("../outside.js")
        t.addfile(member, io.BytesIO(b""))
    with pytest.raises(CodesearchError, match="cannot unpack"):
        unpack(tgz, tmp_path / "out2")
    with pytest.raises(CodesearchError, match="not a wheel"):
        unpack(tmp_path / "x.rar", tmp_path / "out3")


def test_fetch_downloads_once_through_pip(local_index, tmp_path):
    folder = fetch("pypi", "tinyutil==1.2.0", tmp_path / "sources")
    assert (folder / "tinyutil" / "__init__.py").is_file()
    (local_index / "tinyutil-1.2.0-py3-none-any.whl").unlink()  # a second fetch must not need the index
    assert fetch("pypi", "tinyutil==1.2.0", tmp_path / "sources") == folder
    with pytest.raises(CodesearchError, match="download failed"):  # the cached wheel is not the sdist
        fetch("pypi", "tinyutil==1.2.0", tmp_path / "sources", sdist=True)
    with pytest.raises(CodesearchError, match=r"tinyutil==9\.9\.9: download failed"):
        fetch("pypi", "tinyutil==9.9.9", tmp_path / "sources")


def test_optional_package_that_cannot_be_fetched_is_noted(local_index, tmp_path):
    sources = [{"kind": "pypi", "spec": "tinyutil==1.2.0", "repo": "tinyutil", "version": "1.2.0", "sdist": False, "optional": False},
               {"kind": "pypi", "spec": "absent==1.0", "repo": "absent", "version": "1.0", "sdist": False, "optional": True}]
    repos, notes = resolve_sources(sources, tmp_path / "sources")
    assert [(r.name, r.version) for r in repos] == [("tinyutil", "1.2.0")]
    assert len(notes) == 1 and notes[0].startswith("absent==1.0: download failed")
    sources[1]["optional"] = False
    with pytest.raises(CodesearchError, match="absent==1.0"):
        resolve_sources(sources, tmp_path / "sources")


def test_data_stage_reads_a_fetched_package(local_index, tmp_path):
    source = {"kind": "pypi", "spec": "tinyutil==1.2.0", "repo": "tinyutil", "version": "1.2.0", "sdist": False, "optional": False}
    cfg = DataConfig(sources=[source], valid_fraction=0, decontaminate=False)
    stats = build_dataset(cfg, tmp_path / "out", None, log=lambda message: None)
    names = {p["name"] for p in read_jsonl(tmp_path / "out" / "pairs-train.jsonl")}
    assert names == {"parse_header_line", "retry_with_backoff"}
    assert stats["repositories"]["tinyutil"]["version"] == "1.2.0"
    assert (tmp_path / "out" / "sources" / "pypi" / "tinyutil-1.2.0" / ".complete").is_file()


# ----------------------------------------------------------------------------- Debian packages

GO_SOURCE = '''package strutil

// Reverse returns the string with its runes in the opposite order.
func Reverse(s string) string {
	runes := []rune(s)
	for i, j := 0, len(runes)-1; i < j; i, j = i+1, j-1 {
		runes[i], runes[j] = runes[j], runes[i]
	}
	return string(runes)
}
'''


def build_deb(root: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A real binary package built with dpkg-deb from `files` (paths inside the package)."""
    tree = root / f"{name}-tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    deb = root / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def local_apt(tmp_path, monkeypatch) -> Path:
    """A flat file: repository holding two source packages, and APT_CONFIG pointing apt at it alone."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("apt-get and dpkg-deb are Debian's")
    base = tmp_path / "apt"
    repo = base / "repo"
    repo.mkdir(parents=True)
    src_zip = io.BytesIO()
    with zipfile.ZipFile(src_zip, "w") as z:
        z.writestr("mod/strutil/reverse.go", GO_SOURCE)
        z.writestr("mod/other/x.go", "package other\n")
        z.writestr("notes/README", "not source\n")
    packages = [("tinygo-src", "1.0-1", {"usr/share/tinygo/src/strutil/reverse.go": GO_SOURCE.encode()}),
                ("tinyzip-source", "2:2.0+ds-1", {"usr/lib/tiny/src.zip": src_zip.getvalue()})]
    index = []
    for name, version, files in packages:
        deb = build_deb(repo, name, version, files)
        index.append(f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
                     f"Filename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
                     f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}\nDescription: test\n")
    (repo / "Packages").write_text("\n".join(index))
    for folder in ("parts", "state/lists/partial", "cache/archives/partial"):
        (base / folder).mkdir(parents=True)
    (base / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    (base / "apt.conf").write_text(
        f'Dir::Etc::SourceList "{base / "sources.list"}";\nDir::Etc::SourceParts "{base / "parts"}";\n'
        f'Dir::State "{base / "state"}";\nDir::Cache "{base / "cache"}";\nAPT::Sandbox::User "root";\n')
    monkeypatch.setenv("APT_CONFIG", str(base / "apt.conf"))
    subprocess.run(["apt-get", "update", "-q", "-q"], check=True, capture_output=True)
    return repo


def test_deb_pins():
    assert parse_pin("deb", "golang-1.19-src=1.19.8-2") == ("golang-1.19-src", "1.19.8-2")
    assert parse_pin("deb", "openjdk-17-source=17.0.21.1+2-1~deb12u1") == ("openjdk-17-source", "17.0.21.1+2-1~deb12u1")
    for spec in ("glibc-source", "glibc-source=", "glibc-source>=2.36", "Glibc=2.36", "x=1 && rm -rf /"):
        with pytest.raises(CodesearchError, match="name=version"):
            parse_pin("deb", spec)


def test_recipe_reads_deb_sources():
    recipe = Recipe.from_dict({"name": "r", "data": {"sources": [
        {"deb": "golang-1.19-src=1.19.8-2", "include": "usr/share/go-1.19/src/*", "exclude": ["cmd"], "repo": "go"},
        {"deb": "glibc-source=2.36-9+deb12u14", "archive": "usr/src/glibc/glibc-2.36.tar.xz"}]}})
    go, glibc = recipe.data.sources
    assert (go["kind"], go["repo"], go["version"], go["include"], go["exclude"]) == (
        "deb", "go", "1.19.8-2", ["usr/share/go-1.19/src/*"], ["cmd"])
    assert (glibc["repo"], glibc["archive"], glibc["include"]) == ("glibc-source", "usr/src/glibc/glibc-2.36.tar.xz", [])
    with pytest.raises(CodesearchError, match="unknown"):
        Recipe.from_dict({"name": "r", "data": {"sources": [{"deb": "x=1.0", "sdist": True}]}})


def test_fetch_downloads_a_deb_through_apt_once(local_apt, tmp_path):
    folder = fetch("deb", "tinygo-src=1.0-1", tmp_path / "sources")
    assert (folder / "usr/share/tinygo/src/strutil/reverse.go").read_text() == GO_SOURCE
    (local_apt / "tinygo-src_1.0-1_all.deb").unlink()  # a second fetch must not need the repository
    assert fetch("deb", "tinygo-src=1.0-1", tmp_path / "sources") == folder
    with pytest.raises(CodesearchError, match=r"tinygo-src=9\.9: download failed: .*was not found \(run apt-get update"):
        fetch("deb", "tinygo-src=9.9", tmp_path / "sources")


def test_a_deb_archive_is_unpacked_and_its_includes_are_repositories(local_apt, tmp_path):
    source = Recipe.from_dict({"name": "r", "data": {"sources": [
        {"deb": "tinyzip-source=2:2.0+ds-1", "archive": "usr/lib/tiny/src.zip", "include": ["mod/*"],
         "exclude": ["other"], "repo": "tiny"}]}}).data.sources[0]
    repos, notes = resolve_sources([source], tmp_path / "sources")
    assert [(r.name, r.version) for r in repos] == [("tiny-strutil", "2:2.0+ds-1")] and notes == []
    assert (repos[0].root / "reverse.go").read_text() == GO_SOURCE
    assert repos[0].root.parent.parent.name == "tinyzip-source-2_2.0+ds-1-src.zip"
    with pytest.raises(CodesearchError, match="has no file usr/lib/tiny/absent.zip"):
        fetch("deb", "tinyzip-source=2:2.0+ds-1", tmp_path / "other", archive="usr/lib/tiny/absent.zip")
    source["include"] = ["nothing/*"]
    with pytest.raises(CodesearchError, match="matches nothing"):
        resolve_sources([source], tmp_path / "sources")


def test_data_stage_reads_go_from_a_deb(local_apt, tmp_path):
    source = Recipe.from_dict({"name": "r", "data": {"sources": [
        {"deb": "tinygo-src=1.0-1", "include": ["usr/share/tinygo/src/*"], "repo": "tinygo"}]}}).data.sources[0]
    cfg = DataConfig(sources=[source], valid_fraction=0, decontaminate=False)
    stats = build_dataset(cfg, tmp_path / "out", None, log=lambda message: None)
    pairs = read_jsonl(tmp_path / "out" / "pairs-train.jsonl")
    assert [(p["repo"], p["name"], p["language"], p["query"]) for p in pairs] == [
        ("tinygo-strutil", "Reverse", "go", "Reverse returns the string with its runes in the opposite order.")]
    assert stats["repositories"]["tinygo-strutil"]["version"] == "1.0-1"
