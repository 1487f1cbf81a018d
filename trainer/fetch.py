"""Pinned packages from PyPI, npm and Debian, downloaded and unpacked as source trees for the data stage.

    {pypi = "boltons==26.2.0"}              -> pip download (a wheel when there is one) -> unpack
    {pypi = "zstandard==0.25.0", sdist = true} -> the source distribution (C sources included)
    {npm = "lodash@4.18.1"}                 -> npm pack -> unpack
    {deb = "golang-1.19-src=1.19.8-2"}      -> apt-get download -> dpkg-deb -x
    {deb = "glibc-source=2.36-9+deb12u14", archive = "usr/src/glibc/glibc-2.36.tar.xz"}
                                            -> the archive the package ships, unpacked in its place

Each lands in <dest>/<kind>/<name>-<version>[-sdist|-<archive name>]/ and is reused from there on the
next run. The package managers are called as their users call them, so their own configuration
(index URL, proxy, PIP_FIND_LINKS, npm registry, APT_CONFIG) applies. Nothing fetched is committed:
the recipe holds the pins.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from codesearch.errors import CodesearchError

_PYPI_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
_NPM_PIN = re.compile(r"^((?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)@(\d[\w.+-]*)$")
_DEB_PIN = re.compile(r"^([a-z0-9][a-z0-9.+-]+)=((?:\d+:)?\d[A-Za-z0-9.+~-]*)$")
_PIN_FORMS = {"pypi": (_PYPI_PIN, "name==version"), "npm": (_NPM_PIN, "name@version"),
              "deb": (_DEB_PIN, "name=version")}
_TIMEOUT_S = 600


def parse_pin(kind: str, spec: str) -> tuple[str, str]:
    """(name, version) of "name==version" (pypi), "name@version" (npm) or "name=version" (deb);
    anything else is an error."""
    pattern, form = _PIN_FORMS[kind]
    match = pattern.match(spec.strip())
    if not match:
        raise CodesearchError(f"{kind} source {spec!r}: pin an exact version, as {form}")
    return match.group(1), match.group(2)


def fetch(kind: str, spec: str, dest: Path, *, sdist: bool = False, archive: str = "") -> Path:
    """The unpacked source tree of a pinned package, downloading it unless it is already there.

    `archive` (deb only): a path inside the package to an archive it ships (src.zip, a source
    tarball); the tree is then that archive's contents."""
    name, version = parse_pin(kind, spec)
    suffix = "-sdist" if sdist else f"-{Path(archive).name}" if archive else ""
    folder = Path(dest) / kind / f"{name.replace('/', '__')}-{version.replace(':', '_')}{suffix}"
    if (folder / ".complete").is_file():
        return folder
    download = Path(dest) / kind / ".download" / folder.name
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    if kind == "pypi":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--quiet", "--dest", str(download), spec]
        if sdist:
            command[4:4] = ["--no-binary", name]  # only this package: its build tools stay wheels
    elif kind == "npm":
        command = ["npm", "pack", "--silent", "--pack-destination", str(download), spec]
    else:
        command = ["apt-get", "download", "--quiet", "--quiet", spec]
    try:
        _run(command, spec, cwd=download if kind == "deb" else None)  # apt-get download writes to its cwd
    except CodesearchError as exc:
        if kind == "deb" and "was not found" in str(exc):  # lists older than the pin (a fresh machine)
            raise CodesearchError(f"{exc} (run apt-get update: the package lists may predate the pin)") from None
        raise
    archives = sorted(p for p in download.iterdir() if p.is_file())
    if len(archives) != 1:
        raise CodesearchError(f"{spec}: expected one downloaded archive, found {len(archives)}")
    shutil.rmtree(folder, ignore_errors=True)
    if archive:
        package = download / "package"
        unpack(archives[0], package)
        inner = package / archive
        if not inner.resolve().is_relative_to(package.resolve()) or not inner.is_file():
            raise CodesearchError(f"{spec}: the package has no file {archive}")
        unpack(inner, folder)
    else:
        unpack(archives[0], folder)
    (folder / ".complete").write_text(archives[0].name + "\n", encoding="utf-8")
    shutil.rmtree(download, ignore_errors=True)
    return folder


def unpack(archive: Path, folder: Path) -> None:
    """A wheel or zip, a tar (sdist, npm tarball) or a Debian package into `folder`, refusing paths
    that leave it."""
    folder.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".deb"):
            # dpkg-deb unpacks with GNU tar, which keeps members inside the folder
            _run(["dpkg-deb", "--extract", str(archive), str(folder)], archive.name, action="unpacking")
        elif name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                root = folder.resolve()
                for member in z.namelist():
                    if not (folder / member).resolve().is_relative_to(root):
                        raise CodesearchError(f"{archive.name}: member {member!r} would land outside the folder")
                z.extractall(folder)
        elif name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
            with tarfile.open(archive) as t:
                t.extractall(folder, filter="data")
        else:
            raise CodesearchError(f"{archive.name}: not a wheel, zip, tar archive or Debian package")
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise CodesearchError(f"{archive.name}: cannot unpack ({exc})") from exc


def _run(command: list[str], spec: str, cwd: Path | None = None, action: str = "download") -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, cwd=cwd)
    except FileNotFoundError:
        raise CodesearchError(f"{spec}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CodesearchError(f"{spec}: {action} took over {_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise CodesearchError(f"{spec}: {action} failed: {reason}")
