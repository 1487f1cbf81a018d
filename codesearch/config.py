"""Settings, resolved once from every source into one frozen dataclass.

Lowest to highest: built-in defaults, the user's config (`$XDG_CONFIG_HOME/codesearch/config.toml`),
the repository's `.codesearch.toml` or `[tool.codesearch]` in its pyproject.toml, `CODESEARCH_*`
environment variables, then command-line flags. Unknown keys are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from codesearch.errors import CodesearchError
from codesearch.secrets import compile_allow, compile_patterns


@dataclass(frozen=True)
class Settings:
    model: str = ""  # model folder; "" means the default model shipped with codesearch
    languages: tuple[str, ...] = ()  # languages to index; () means every supported one
    ignore: tuple[str, ...] = ()  # extra gitignore-style patterns, relative to the repository root
    index_dir: str = ".codesearch"  # where the index lives, relative to the repository root, or an s3:// URI
    repo_name: str = ""  # the repository's name in the index's `repo` column; "" means the root folder's name
    max_file_bytes: int = 1_000_000  # larger files are skipped as "too large"
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    threads: int = 0  # ONNX Runtime CPU threads; 0 means all cores
    batch_tokens: int = 16384  # tokens per embedding batch (rows x longest row)
    window_overlap: int = 64  # tokens shared by consecutive windows of a long function
    tracked_only: bool = False  # inside a git repository, index exactly the files `git ls-files` lists
    confirm_above: int = 20000  # a first index of more estimated functions asks first in a terminal (0: never)
    daemon_threads: int = 0  # CPU threads the daemon indexes with; 0 means half the cores
    daemon_nice: int = 10  # how much lower the daemon's indexing thread runs (OS niceness added)
    skip_secrets: bool = True  # leave out .env files, keys, and code holding tokens or passwords (secrets.py)
    secret_patterns: tuple[str, ...] = ()  # extra regular expressions that mark a file's content as a secret
    secret_allow: tuple[str, ...] = ()  # gitignore-style paths never judged secret (test fixtures with fake keys)

    def index_path(self, root: Path) -> Path:
        # Made absolute without resolving symlinks: an index folder that is a symlink must be seen as one.
        return Path(os.path.abspath(root / self.index_dir))

    @property
    def remote_index(self) -> bool:
        """Whether the index lives in object storage (an `s3://bucket/prefix` URI) rather than a folder."""
        return self.index_dir.startswith("s3://")

    def index_location(self, root: Path) -> str:
        """The index's folder path, or its object-storage URI."""
        return self.index_dir.rstrip("/") if self.remote_index else str(self.index_path(root))

    def repo(self, root: Path) -> str:
        return self.repo_name or root.resolve().name


_DEVICES = ("auto", "cpu", "cuda")


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check and convert one setting's value to the field's type."""
    default = getattr(Settings, name)
    if isinstance(default, bool):
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise CodesearchError(f"{source}: '{name}' must be true or false, got {value!r}")
        return value
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise CodesearchError(f"{source}: '{name}' must be a list of strings")
        if name == "secret_patterns":
            compile_patterns(value, f"{source}: '{name}'")  # checked once, here
        elif name == "secret_allow":
            compile_allow(value, f"{source}: '{name}'")
        return tuple(value)
    if isinstance(default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise CodesearchError(f"{source}: '{name}' must be an integer, got {value!r}") from None
        if number < 0:
            raise CodesearchError(f"{source}: '{name}' must not be negative")
        return number
    if not isinstance(value, str):
        raise CodesearchError(f"{source}: '{name}' must be a string, got {value!r}")
    if name == "device" and value not in _DEVICES:
        raise CodesearchError(f"{source}: 'device' must be one of {', '.join(_DEVICES)}, got {value!r}")
    return value


def _apply(values: dict[str, Any], layer: Mapping[str, Any], source: str, base: Path | None = None) -> None:
    valid = [f.name for f in fields(Settings)]
    for key, value in layer.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise CodesearchError(f"{source}: unknown setting '{key}' (valid: {', '.join(valid)})")
        value = _coerce(name, value, source)
        if name == "model" and value and base is not None and not Path(value).is_absolute():
            value = str((base / value).resolve())
        values[name] = value


def _repository_layer(layer: Mapping[str, Any], source: str, root: Path) -> Mapping[str, Any]:
    """A repository's own settings, checked as untrusted input: its `index_dir` must stay inside
    the repository (a cloned repository must not make codesearch write elsewhere on the disk, nor
    send its code to an object store of its choosing)."""
    index_dir = layer.get("index_dir", layer.get("index-dir"))
    if isinstance(index_dir, str):
        inside = not index_dir.startswith("s3://") and not Path(index_dir).is_absolute()
        resolved = (root / index_dir).resolve()
        if not inside or resolved == root.resolve() or not resolved.is_relative_to(root.resolve()):
            raise CodesearchError(
                f"{source}: 'index_dir' must be a folder inside the repository, got {index_dir!r} "
                "(set another location in your own config, CODESEARCH_INDEX_DIR or --index)"
            )
    return layer


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CodesearchError(f"cannot read config {path}: {exc}") from None


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "codesearch" / "config.toml"


def load_settings(root: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Resolve settings for the repository at `root`; `overrides` are the command-line flags that were given."""
    values: dict[str, Any] = {}
    user = user_config_path()
    if user.is_file():
        _apply(values, _read_toml(user), str(user), base=user.parent)
    dedicated = root / ".codesearch.toml"
    pyproject = root / "pyproject.toml"
    if dedicated.is_file():
        _apply(values, _repository_layer(_read_toml(dedicated), str(dedicated), root), str(dedicated), base=root)
    elif pyproject.is_file():
        section = _read_toml(pyproject).get("tool", {}).get("codesearch", {})
        source = f"{pyproject} [tool.codesearch]"
        _apply(values, _repository_layer(section, source, root), source, base=root)
    env = {
        f.name: os.environ[f"CODESEARCH_{f.name.upper()}"]
        for f in fields(Settings)
        if f"CODESEARCH_{f.name.upper()}" in os.environ
    }
    _apply(values, env, "environment", base=Path.cwd())
    if overrides:
        _apply(values, {k: v for k, v in overrides.items() if v is not None}, "command line", base=Path.cwd())
    return dataclasses.replace(Settings(), **values)
