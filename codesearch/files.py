"""Which files get indexed: walk a tree as git sees it, skip what is not worth embedding, read text safely.

Inside a git work tree the walk lists what `git ls-files --cached --others --exclude-standard` lists:
the global excludes file (core.excludesFile), the repository's info/exclude, .gitignore files at
every level (also those above the root, up to the top of the work tree), negations and directory
rules, with ignored directories pruned as git prunes them and nested repositories left out. Then
.codesearchignore files (same syntax) and the user's extra patterns; no other ignore file is read.
With `tracked_only`, the candidates are exactly `git ls-files`. Defaults then drop vendored, build,
generated, minified, lock and data files, and files that hold secrets by name (see secrets.py;
read_source refuses a file whose content holds one). The walk never leaves the root, and counts every
candidate it drops by reason so that nothing disappears silently.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pathspec.patterns.gitignore import GitIgnorePatternError
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

from codesearch.errors import CodesearchError
from codesearch.languages import language_for_head, language_for_path
from codesearch.secrets import BUILTIN, SECRET, SecretRules

# What the walk passes over without being told, in one place. Each can be brought back with a `!` rule.
SKIP_DIRS = frozenset({
    "node_modules", "bower_components", "vendor", "third_party",  # vendored dependencies
    "dist", "build", "target",                                    # build output
    "__pycache__", ".venv", "venv", ".tox",                       # Python environments and caches
})
LOCK_FILES = frozenset({
    "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "Cargo.lock", "poetry.lock",
    "Pipfile.lock", "uv.lock", "Gemfile.lock", "composer.lock", "go.sum",
})
MINIFIABLE_SUFFIXES = (".js", ".mjs", ".cjs", ".css")
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".csv", ".tsv")  # counted, never chunked
IGNORE_FILE = ".gitignore"
CODESEARCH_IGNORE_FILE = ".codesearchignore"

HEAD_BYTES = 4096        # read from each candidate to spot binary, generated and minified files
SCRIPT_HEAD = 512        # read from a file with no extension to find its #! or mode line
GENERATED_HEAD = 2048    # generated-code markers must appear this early
MINIFIED_LINE = 1000     # a line this long near the top of a .js/.css file means it was minified
BINARY_HEAD = 8192       # a NUL byte this early means binary, as git decides

# The markers are spelled with groups and classes so that this file does not match them itself.
_GENERATED_MARKER = re.compile(rb"@(?:generated)|<auto-(?:generated)|Code generated .{0,200}DO NOT[ ]EDIT")
_DO_NOT_EDIT = b"DO NOT" + b" EDIT"
_GENERATED_TOP_LINES = 5  # "DO NOT EDIT" alone counts only in the first lines


@dataclass(frozen=True)
class SourceFile:
    """A file the walk chose to index."""

    path: str        # repo-relative posix path, "src/app.py"
    abs_path: Path
    size: int
    mtime_ns: int
    language: str

    @property
    def root(self) -> str:
        """The real path of the tree the walk found this file in (`abs_path` is root / path)."""
        return str(self.abs_path)[: -len(self.path) - 1] if self.path else str(self.abs_path)


@dataclass
class WalkResult:
    """The files to index, and what was passed over and why (directory paths end in "/")."""

    files: list[SourceFile] = field(default_factory=list)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped_paths: list[tuple[str, str]] = field(default_factory=list)
    secret_rules: dict[str, str] = field(default_factory=dict)  # path -> the rule that found a secret in it

    def skip(self, path: str, reason: str, rule: str = "") -> None:
        self.skipped[reason] += 1
        self.skipped_paths.append((path, reason))
        if rule:
            self.secret_rules[path] = rule


class SkipFile(Exception):
    """A file that cannot be indexed; `reason` is the short string that gets counted, `rule` the
    secret rule that matched when the reason is "secret" (its name, never the matched text)."""

    def __init__(self, reason: str, path: str | os.PathLike[str] = "", rule: str = "") -> None:
        super().__init__(f"{os.fspath(path)}: {reason}" if path else reason)
        self.reason = reason
        self.path = os.fspath(path)
        self.rule = rule


# pathspec marks directory matches with a named group; joined into one expression, the names would clash.
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


@dataclass(frozen=True)
class IgnoreRules:
    """The patterns of one ignore file, for the paths below the directory holding it.

    pathspec translates each line to a regular expression. Its expressions also match everything below
    a matching directory, because it answers for flat lists of files; we walk and prune instead, so
    every parent of a path has already been accepted and only a match of the path itself may count:
    each expression must therefore match up to the end of the path (directories carry a trailing "/").
    """

    base: str                                          # "" for the root, else "src/lib/"
    rules: tuple[tuple[re.Pattern[str], bool], ...]   # (expression, ignores?), last line first
    any_rule: re.Pattern[str]                          # all of them at once: most paths match none
    above: str = ""  # for a file above the root: the root's path relative to its directory, "sub/dir/"
    too_complex: tuple[int, ...] = ()  # numbers of the lines left out because matching them could take too long

    @classmethod
    def parse(cls, lines: Iterable[str], base: str = "", above: str = "") -> IgnoreRules:
        sources, rules, too_complex = [], [], []
        for number, line in enumerate(lines, start=1):
            try:
                pattern = GitIgnoreSpecPattern(_spell_out_trailing_globstar(line))
            except GitIgnorePatternError:
                continue  # git skips a line it cannot parse, such as one ending in a lone backslash
            if pattern.include is not None and pattern.regex is not None:
                expression = linear_star_runs(pattern.regex.pattern)
                if expression.count(".+") + expression.count(".*") > MAX_GLOBSTARS:
                    too_complex.append(number)
                    continue
                source = rf"(?:{expression})\Z"
                rules.append((re.compile(source, pattern.regex.flags), pattern.include))
                sources.append(_NAMED_GROUP.sub("(?:", source))
        any_rule = re.compile("|".join(sources) or r"(?!)")
        return cls(base, tuple(reversed(rules)), any_rule, above, tuple(too_complex))

    def verdict(self, path: str, is_dir: bool) -> bool | None:
        """True if the last line matching `path` ignores it, False for a `!` line, None if none match."""
        text = self.above + path[len(self.base):] + ("/" if is_dir else "")
        if not self.any_rule.search(text):
            return None
        for regex, ignores in self.rules:
            if regex.search(text):
                return ignores
        return None


Layer = tuple[IgnoreRules, ...]  # ignore files of one kind, from the root down

_STAR = "[^/]*"  # pathspec's expression for a `*` inside one path segment
_FIXED_PIECE = re.compile(r"(?:\\.|\[\^/\]|\[(?!\^)[^\]/]*\]|[^\\()|$/*+?{}\[\].])+")  # literals, `?`, classes
MAX_GLOBSTARS = 2  # `**` wildcards one ignore line may hold (each more multiplies the worst case by the depth)


def linear_star_runs(expression: str) -> str:
    """Rewrite pathspec's expression of a gitignore line so that Python's backtracking matcher takes
    linear time on it: in `*a*a*b` every `*` but the last of its segment becomes an atomic lazy
    match of the fixed piece after it, `(?>[^/]*?a)`. Taking the leftmost place for each piece
    between two stars never loses a match (the next star absorbs the rest of the segment), so the
    set of matched paths is unchanged; without this, `*a*a*a...*b` against a long name is
    exponential and an index never ends."""
    while _STAR + _STAR in expression:
        expression = expression.replace(_STAR + _STAR, _STAR)
    parts = expression.split(_STAR)
    out = [parts[0]]
    for i, piece in enumerate(parts[1:], start=1):
        middle = i < len(parts) - 1  # another star of the same segment follows this piece directly
        if middle and piece and _FIXED_PIECE.fullmatch(piece):
            out.append(f"(?>{_STAR}?{piece})")
        else:
            out.append(_STAR + piece)
    return "".join(out)


def _spell_out_trailing_globstar(line: str) -> str:
    """Rewrite "dir/**" as "dir/**/*": the same set for git, but pathspec's expression for the first
    form matches "dir/" itself, which would make the walk prune a directory git still enters."""
    body = line.rstrip(" ")  # a line ending in an escaped space keeps its backslash last: left alone
    for tail in ("/**", "/**/"):
        if body.endswith(tail):
            return body[: -len(tail)] + "/**/*" + tail[3:]
    return line


def _read_rules(path: str, base: str, result: WalkResult, rel: str, above: str = "") -> IgnoreRules | None:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            rules = IgnoreRules.parse(f.read().splitlines(), base, above)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        result.skip(rel, "unreadable")
        return None
    for number in rules.too_complex:  # shown with the skips: the user learns the rule was not applied
        result.skip(f"{rel}:{number}", "ignore rule too complex")
    return rules if rules.rules else None


def walk(
    root: Path,
    *,
    extra_ignores: Sequence[str] = (),
    languages: Collection[str] | None = None,
    max_file_bytes: int = 1_000_000,
    index_dir: str = ".codesearch",
    tracked_only: bool = False,
    secrets: SecretRules | None = BUILTIN,
) -> WalkResult:
    """List the source files under `root` that should be indexed, sorted by path.

    Precedence, lowest first: .git/info/exclude, .gitignore files from the root down, .codesearchignore
    files from the root down, then `extra_ignores` (relative to root); the last matching line decides.
    Files that hold secrets by name are counted as "secret" under `secrets` (None: not looked for).
    """
    walker, git, extra = _start(root, extra_ignores, languages, max_file_bytes, index_dir, tracked_only, secrets)
    walker.run(git, extra)
    walker.result.files.sort(key=lambda f: f.path)
    walker.result.skipped_paths.sort()
    return walker.result


NOT_CODE = "not code"  # what scope_of says of a path the walk passes over without counting it


def scope_of(
    root: Path,
    path: str,
    *,
    extra_ignores: Sequence[str] = (),
    languages: Collection[str] | None = None,
    max_file_bytes: int = 1_000_000,
    index_dir: str = ".codesearch",
    tracked_only: bool = False,
    secrets: SecretRules | None = BUILTIN,
) -> SourceFile | str:
    """Judge one repo-relative file as `walk` with the same options would: its SourceFile if the walk
    would index it, else the reason it would not (a skip reason such as "ignored", or NOT_CODE).

    Only the directories on the way down are read, so this is cheap enough to call on every save.
    """
    parts = PurePosixPath(path).parts
    if not parts or parts[0] == "/" or ".." in parts:
        return "outside root"
    walker, git, extra = _start(root, extra_ignores, languages, max_file_bytes, index_dir, tracked_only, secrets)
    abs_dir, prefix, ours = walker.root, "", ()
    for depth, name in enumerate(parts):
        listing = walker.list_dir(abs_dir, prefix)
        if listing is None:
            break
        git, ours, rules = walker.layers(abs_dir, prefix, listing, git, ours, extra)
        entry = next((e for e in listing if e.name == name), None)
        if entry is None:
            return "vanished"
        last = depth == len(parts) - 1
        if not last and not entry.is_dir(follow_symlinks=False):
            return "symlink" if entry.is_symlink() else "vanished"  # the walk never goes through it
        if not walker.visit(entry, prefix + name, rules) or last:
            break
        abs_dir, prefix = entry.path, prefix + name + "/"
    if walker.result.files:
        return walker.result.files[0]
    on_the_way = [r for p, r in walker.result.skipped_paths if p in ("", path, path + "/") or _is_dir_above(p, path)]
    return on_the_way[-1] if on_the_way else NOT_CODE


def _is_dir_above(dir_path: str, path: str) -> bool:
    return dir_path.endswith("/") and path.startswith(dir_path)


def _start(
    root: Path,
    extra_ignores: Sequence[str],
    languages: Collection[str] | None,
    max_file_bytes: int,
    index_dir: str,
    tracked_only: bool = False,
    secrets: SecretRules | None = BUILTIN,
) -> tuple[_Walker, Layer, Layer]:
    """A walker for `root` and the ignore layers that apply everywhere: git's (global excludes,
    info/exclude, .gitignore files above the root), lowest precedence first, and the user's."""
    root = Path(root)
    if not root.is_dir():
        raise CodesearchError(f"{root}: not a directory")
    walker = _Walker(
        root=os.path.realpath(root),
        languages=None if languages is None else frozenset(languages),
        max_file_bytes=max_file_bytes,
        index_dir=index_dir.strip("/"),
        secrets=secrets,
    )
    repo = GitRepo.find(walker.root)
    walker.in_git = repo is not None
    git: Layer = ()
    if tracked_only:
        if repo is None:
            raise CodesearchError(f"--tracked-only: {root} is not inside a git repository")
        walker.track(repo.tracked(walker.root))  # what git tracks is the list: its ignore rules are moot
    elif repo is not None:
        git = repo.layers(walker.root, walker.result)
    extra = IgnoreRules.parse(extra_ignores)
    return walker, git, (extra,) if extra.rules else ()


@dataclass(frozen=True)
class GitRepo:
    """The git work tree that holds a directory: its top and its git directory."""

    top: str
    git_dir: str

    @classmethod
    def find(cls, path: str) -> GitRepo | None:
        """The innermost work tree holding `path` (a .git directory, or a .git file as in worktrees
        and submodules), or None."""
        here = path
        while True:
            dot_git = os.path.join(here, ".git")
            if os.path.isdir(dot_git):
                return cls(here, dot_git)
            if os.path.isfile(dot_git):
                git_dir = _gitdir_of_file(dot_git)
                if git_dir is not None and os.path.isdir(git_dir):
                    return cls(here, git_dir)
            parent = os.path.dirname(here)
            if parent == here:
                return None
            here = parent

    def layers(self, root: str, result: WalkResult) -> Layer:
        """The rules that apply to `root` before its own .gitignore files, lowest precedence first:
        core.excludesFile, info/exclude, then .gitignore files from the top down to root's parent."""
        inside = os.path.relpath(root, self.top)
        above = "" if inside == "." else Path(inside).as_posix() + "/"
        found = []
        for path, rel, prefix in (
            (global_excludes_file(self.top), "core.excludesFile", above),
            (os.path.join(self.git_dir, "info", "exclude"), ".git/info/exclude", above),
        ):
            if path and (rules := _read_rules(path, "", result, rel, prefix)):
                found.append(rules)
        parts = Path(above).parts
        for depth in range(len(parts)):  # .gitignore files in the directories between the top and root
            directory = os.path.join(self.top, *parts[:depth])
            prefix = "/".join(parts[depth:]) + "/"
            if rules := _read_rules(os.path.join(directory, IGNORE_FILE), "", result, "../" + IGNORE_FILE, prefix):
                found.append(rules)
        return tuple(found)

    def tracked(self, root: str) -> list[str]:
        """`git ls-files` under `root`, relative to it."""
        listing = _git(["ls-files", "-z", "--cached"], cwd=root)
        if listing is None:
            raise CodesearchError(f"--tracked-only: `git ls-files` failed in {root}")
        return [p for p in listing.split("\0") if p]


def _is_repository(path: str) -> bool:
    """Whether a directory is a work tree of its own (a .git directory, or a .git file naming one)."""
    dot_git = os.path.join(path, ".git")
    if os.path.isdir(dot_git):
        return True
    git_dir = _gitdir_of_file(dot_git) if os.path.isfile(dot_git) else None
    return git_dir is not None and os.path.isdir(git_dir)


def _gitdir_of_file(dot_git: str) -> str | None:
    try:
        with open(dot_git, encoding="utf-8") as f:
            line = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not line.startswith("gitdir:"):
        return None
    return os.path.join(os.path.dirname(dot_git), line[len("gitdir:"):].strip())


# A repository's own .git/config is untrusted (an unpacked archive can carry one): git must not run
# a command it names. core.fsmonitor is the one that git runs for ls-files and status.
UNTRUSTED_REPOSITORY = ("-c", "core.fsmonitor=false")


def _git(args: list[str], cwd: str) -> str | None:
    """Run git and return its stdout, or None when git is missing or fails."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(["git", *UNTRUSTED_REPOSITORY, *args], cwd=cwd, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def global_excludes_file(cwd: str) -> str | None:
    """The user's global ignore file as git finds it: core.excludesFile, else $XDG_CONFIG_HOME/git/ignore
    (~/.config/git/ignore)."""
    configured = _git(["config", "--type=path", "--get", "core.excludesFile"], cwd=cwd)
    if configured and configured.strip():
        return os.path.expanduser(configured.strip())
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(xdg, "git", "ignore")


@dataclass
class _Walker:
    """The state of one walk: options, the answer so far, and the real directories already entered."""

    root: str
    languages: frozenset[str] | None
    max_file_bytes: int
    index_dir: str
    secrets: SecretRules | None = BUILTIN
    result: WalkResult = field(default_factory=WalkResult)
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)
    in_git: bool = False  # inside a git work tree: nested repositories are left out, as git does
    tracked: frozenset[str] | None = None  # with tracked_only: the files git tracks, and their directories
    tracked_dirs: frozenset[str] = frozenset()

    def track(self, paths: list[str]) -> None:
        self.tracked = frozenset(paths)
        self.tracked_dirs = frozenset(str(parent) for p in paths for parent in PurePosixPath(p).parents)

    def __post_init__(self) -> None:
        root_stat = os.stat(self.root)
        self.seen_dirs.add((root_stat.st_dev, root_stat.st_ino))

    def run(self, git: Layer, extra: Layer) -> None:
        # Depth-first with an explicit stack of (absolute dir, its "rel/" prefix, git layer, our layer).
        stack: list[tuple[str, str, Layer, Layer]] = [(self.root, "", git, ())]
        while stack:
            abs_dir, prefix, git, ours = stack.pop()
            entries = self.list_dir(abs_dir, prefix)
            if entries is None:
                continue
            git, ours, rules = self.layers(abs_dir, prefix, entries, git, ours, extra)
            for entry in entries:
                if self.visit(entry, prefix + entry.name, rules):
                    stack.append((entry.path, prefix + entry.name + "/", git, ours))

    def list_dir(self, abs_dir: str, prefix: str) -> list[os.DirEntry[str]] | None:
        """A directory's entries by name, or None (counted) when it vanished or cannot be read."""
        try:
            with os.scandir(abs_dir) as it:
                return sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            self.result.skip(prefix, "vanished")
        except OSError:
            self.result.skip(prefix, "unreadable")
        return None

    def layers(
        self, abs_dir: str, prefix: str, entries: list[os.DirEntry[str]], git: Layer, ours: Layer, extra: Layer
    ) -> tuple[Layer, Layer, Layer]:
        """The git and codesearch layers with this directory's ignore files added, and every rule
        that applies to its entries, highest precedence first."""
        names = {e.name for e in entries}
        if self.tracked is None:  # what git tracks is listed whatever its ignore files say
            git += self._rules_in(abs_dir, prefix, IGNORE_FILE, names)
        ours += self._rules_in(abs_dir, prefix, CODESEARCH_IGNORE_FILE, names)
        return git, ours, extra + ours[::-1] + git[::-1]

    def visit(self, entry: os.DirEntry[str], rel: str, rules: Layer) -> bool:
        """Keep or count one directory entry; True for a directory the walk should enter."""
        if entry.name == ".git" or rel == self.index_dir:
            return False
        is_dir = entry.is_dir(follow_symlinks=False)  # git matches a symlink as a file
        verdict = next((v for r in rules if (v := r.verdict(rel, is_dir)) is not None), None)
        if self.tracked is not None and not (rel in self.tracked_dirs if is_dir else rel in self.tracked):
            if is_dir or self._wanted_language(rel):
                self.result.skip(rel + "/" if is_dir else rel, "untracked")
            return False
        if not verdict and not _is_utf8(entry.name):  # the store and --json need UTF-8 paths
            if is_dir or self._wanted_language(rel):
                self.result.skip(_escaped(rel) + ("/" if is_dir else ""), "name not utf-8")
            return False
        if is_dir:
            return self._enter(entry, rel, verdict)
        if verdict:
            if self._wanted_language(rel):
                self.result.skip(rel, "ignored")
        else:
            self._consider_file(entry, rel)
        return False

    def _rules_in(self, abs_dir: str, prefix: str, name: str, names: set[str]) -> Layer:
        """The rules of ignore file `name` in this directory, as a 0- or 1-tuple to append to a layer."""
        if name not in names:
            return ()
        rules = _read_rules(os.path.join(abs_dir, name), prefix, self.result, prefix + name)
        return (rules,) if rules else ()

    def _enter(self, entry: os.DirEntry[str], rel: str, verdict: bool | None) -> bool:
        """Whether to descend into a directory; a `!` rule (verdict False) overrides SKIP_DIRS."""
        if verdict:
            reason = "ignored"
        elif verdict is None and entry.name in SKIP_DIRS:
            reason = "vendored/build dir"
        elif self.in_git and _is_repository(entry.path):
            reason = "nested repository"  # git lists a nested repository or submodule, not its files
        else:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                reason = "vanished"
            except OSError:
                reason = "unreadable"
            else:
                key = (st.st_dev, st.st_ino)
                if key not in self.seen_dirs:  # only bind mounts can bring a directory back
                    self.seen_dirs.add(key)
                    return True
                reason = "symlink loop"
        self.result.skip(rel + "/", reason)
        return False

    def _wanted_language(self, rel: str) -> str | None:
        language = language_for_path(rel)
        if language is None or (self.languages is not None and language not in self.languages):
            if language == "c" and rel.endswith(".h") and self.languages and self.languages & {"cpp", "objc"}:
                return language  # a header is C until its text says C++ or Objective-C (chunking decides)
            return None
        return language

    def _script_language(self, entry: os.DirEntry[str], rel: str) -> str | None:
        """The language of a file with no extension, from its first bytes (languages.language_for_head);
        None for anything else (a LICENSE, a binary), which is then not code and not counted."""
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > self.max_file_bytes:
                return None
            fd = _open_inside(Path(entry.path), self.root)
            with os.fdopen(fd, "rb") as f:
                head = f.read(SCRIPT_HEAD)
        except (OSError, SkipFile):
            return None
        language = language_for_head(head)
        if language is None or (self.languages is not None and language not in self.languages):
            return None
        return language

    def _consider_file(self, entry: os.DirEntry[str], rel: str) -> None:
        """Keep a file or count why not; a file of no wanted language is not code and is not counted,
        unless it holds secrets by its name (.env, id_rsa, ...): the user is told that it was kept out."""
        if self.secrets is not None and (rule := self.secrets.name_rule(rel)):
            self.result.skip(rel, SECRET, rule)
            return
        if entry.name in LOCK_FILES:
            self.result.skip(rel, "lock file")
            return
        if entry.name.lower().endswith(DATA_SUFFIXES):
            self.result.skip(rel, "data format")
            return
        st, reason = self._follow_link(entry) if entry.is_symlink() else (None, "")
        if st is not None and stat.S_ISDIR(st.st_mode):
            self.result.skip(rel + "/", reason)  # a linked directory is counted whatever its name
            return
        language = self._wanted_language(rel)
        if language is None and "." not in entry.name and not reason:
            language = self._script_language(entry, rel)  # `bin/deploy`: its #! line or mode line tells
        if language is None:
            return
        if st is None and not reason:
            st, reason = _stat(entry)  # only now: most files in a tree are not code
        if not reason:
            assert st is not None
            reason = self._skip_reason(entry.path, rel, st)
        if reason:
            self.result.skip(rel, reason)
            return
        source = SourceFile(rel, Path(self.root, rel), st.st_size, st.st_mtime_ns, language)
        self.result.files.append(source)

    def _follow_link(self, entry: os.DirEntry[str]) -> tuple[os.stat_result | None, str]:
        """The target's stat and a skip reason ("" to keep it): only file links inside the root are kept."""
        try:
            st = os.stat(entry.path)
        except OSError as e:
            return None, "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
        target = os.path.realpath(entry.path)
        if not _is_inside(target, self.root):
            return st, "symlink outside root"
        if stat.S_ISDIR(st.st_mode):
            return st, "symlink"  # it would duplicate a directory the walk reaches anyway
        return st, ""

    def _skip_reason(self, abs_path: str, rel: str, st: os.stat_result) -> str:
        """Why a candidate file is not worth indexing, or "" to keep it; reads at most HEAD_BYTES."""
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > self.max_file_bytes:
            return "too large"
        name = rel.rsplit("/", 1)[-1]
        if name.endswith((".min.js", ".min.css")):
            return "minified"
        try:
            with open(abs_path, "rb") as f:
                head = f.read(HEAD_BYTES)
        except FileNotFoundError:
            return "vanished"
        except OSError:
            return "unreadable"
        if b"\0" in head:
            return "binary"
        if looks_generated(head):
            return "generated"
        if name.endswith(MINIFIABLE_SUFFIXES) and max(map(len, head.split(b"\n"))) > MINIFIED_LINE:
            return "minified"
        return ""


def _is_utf8(name: str) -> bool:
    """Whether a name read from the file system was valid UTF-8 (Python decodes other bytes to lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(path: str) -> str:
    """A path with the bytes that are not UTF-8 written as escapes, "caf\\xe9.py", so that it can be printed."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _stat(entry: os.DirEntry[str]) -> tuple[os.stat_result | None, str]:
    try:
        return entry.stat(follow_symlinks=False), ""
    except FileNotFoundError:
        return None, "vanished"
    except OSError:
        return None, "unreadable"


def looks_generated(head: bytes) -> bool:
    """Whether the start of a file carries a generated-code marker (@generated, Go's "Code generated
    ... DO NOT EDIT", .NET's <auto-generated>, or a bare "DO NOT EDIT" in the first lines)."""
    head = head[:GENERATED_HEAD]
    if _GENERATED_MARKER.search(head):
        return True
    top_lines = head.split(b"\n", _GENERATED_TOP_LINES)[:_GENERATED_TOP_LINES]
    return any(_DO_NOT_EDIT in line for line in top_lines)


def read_source(
    file: SourceFile | Path, max_file_bytes: int = 1_000_000, secrets: SecretRules | None = BUILTIN
) -> tuple[str, str]:
    """The text of a source file and the sha256 of its raw bytes; raises SkipFile when it cannot be indexed.

    A file whose bytes hold a secret under `secrets` (None: not looked for) is refused as "secret".
    The bytes are decoded strictly as UTF-8 with a leading BOM dropped; line endings are left alone so
    that offsets match the file on disk.
    """
    path = file.abs_path if isinstance(file, SourceFile) else Path(file)
    try:
        with os.fdopen(_open_inside(path, file.root if isinstance(file, SourceFile) else None), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SkipFile("not a regular file", path)
            data = f.read(max_file_bytes + 1)
    except FileNotFoundError:
        raise SkipFile("vanished", path) from None
    except OSError:  # a directory, no permission, an I/O error
        raise SkipFile("unreadable", path) from None
    if len(data) > max_file_bytes:
        raise SkipFile("too large", path)
    if b"\0" in data[:BINARY_HEAD]:
        raise SkipFile("binary", path)
    rel = file.path if isinstance(file, SourceFile) else ""
    if secrets is not None and (rule := secrets.content_rule(data, rel)):
        raise SkipFile(SECRET, path, rule)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SkipFile("not utf-8", path) from None
    return text, hashlib.sha256(data).hexdigest()


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # non-blocking: a FIFO cannot hang us
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_inside(path: Path, root: str | None) -> int:
    """Open a file the walk chose, for reading, so that it cannot lead outside `root` even if it was
    swapped for a symlink (or a directory above it was) after the walk looked: the last name is
    opened without following a symlink (a link the walk kept is resolved and checked first), and the
    file actually opened is checked to lie inside the root. Without a root, any path is opened."""
    try:
        fd = os.open(path, _READ_FLAGS | _NOFOLLOW)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        target = os.path.realpath(path)  # a symlink: the walk keeps links to files inside the root
        if root is not None and not _is_inside(target, root):
            raise SkipFile("symlink outside root", path) from None
        fd = os.open(target, _READ_FLAGS | _NOFOLLOW)
    if root is not None and not _is_inside(_opened_path(fd, path), root):
        os.close(fd)
        raise SkipFile("symlink outside root", path)
    return fd


def _opened_path(fd: int, path: Path) -> str:
    """The real path of the file open as `fd` (Linux names it in /proc; elsewhere the path's real
    path, checked to be the same file as the one open)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = os.path.realpath(path)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(real))
        except OSError:
            same = False
        return real if same else ""


def _is_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def screen_secrets(result: WalkResult, secrets: SecretRules | None, max_file_bytes: int = 1_000_000) -> None:
    """Move the files whose content holds a secret from `result.files` to its skips, as reading them
    would (the indexer finds them when it reads each file; a dry run reads them all here)."""
    if secrets is None:
        return
    kept = []
    for file in result.files:
        try:
            read_source(file, max_file_bytes, secrets)
        except SkipFile as skip:
            if skip.reason == SECRET:
                result.skip(file.path, SECRET, skip.rule)
                continue
        kept.append(file)
    result.files = kept
    result.skipped_paths.sort()


def file_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file's bytes, read in blocks so that size does not matter."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
