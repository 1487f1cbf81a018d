"""What counts as a secret: files that hold credentials by name, and file contents that carry one.

Two layers, both on by default (`skip_secrets`). By name: dotenv files, private keys, credential and
token files (`.npmrc`, `.netrc`, `.aws/credentials`, ...), wherever they sit; a template such as
`.env.example` is not a secret. None of these is source code, so this layer only tells the user what
was kept out. By content: the bytes of every file about to be indexed are searched for private key
blocks, tokens of a recognisable shape (AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI,
Anthropic, Hugging Face, npm, PyPI, JWTs) and `password = "..."`-style assignments of a literal that
looks random, then for the user's `secret_patterns`. A false positive leaves a whole file of the
user's code out of the index, so the content rules are narrow: a known token shape that is not a
placeholder ("ghp_xxxx..."), or for an assignment a literal of 16+ characters with letters and
digits, some entropy, a run of more than 8 characters between separators, no placeholder words
("changeme", "example", "<your key>", ...), and neither a short hex id nor a UUID. Paths matching
`secret_allow` (gitignore syntax) are never judged. Only a rule's name is ever reported, never the
text it matched.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codesearch.errors import CodesearchError

if TYPE_CHECKING:
    import pathspec

    from codesearch.config import Settings

SECRET = "secret"  # the skip reason
RULES_VERSION = 1  # bump when the built-in rules change in a way the tables below do not show

# --- by name -------------------------------------------------------------------------------------

DOTENV, KEY_FILE, CREDENTIALS_FILE = "dotenv file", "key file", "credentials file"
_NAMES = {  # whole file names, lower case
    ".env": DOTENV, ".envrc": DOTENV,
    **dict.fromkeys(("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk"), KEY_FILE),
    **dict.fromkeys((
        ".npmrc", ".pypirc", ".netrc", "_netrc", ".git-credentials", ".htpasswd", ".pgpass", ".s3cfg",
        "credentials", "credentials.json", "kubeconfig", "secrets.yml", "secrets.yaml", "secrets.json",
    ), CREDENTIALS_FILE),
}
_SUFFIXES = {
    **dict.fromkeys((".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".ppk"), KEY_FILE),
    ".env": DOTENV, ".tfvars": CREDENTIALS_FILE, ".kubeconfig": CREDENTIALS_FILE,
}
_PATHS = dict.fromkeys((".aws/credentials", ".docker/config.json", ".kube/config"), CREDENTIALS_FILE)
_CREDENTIAL_JSON = re.compile(r"(?:client_secret|service[-_]account)[^/]*\.json")
_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist", ".defaults")  # .env.example and such


def name_rule(path: str) -> str:
    """The rule that makes a file a secret by its name ("dotenv file", ...), or ""."""
    lower = path.lower()
    name = lower.rsplit("/", 1)[-1]
    if name.endswith(_TEMPLATE_SUFFIXES):
        return ""
    if name in _NAMES:
        return _NAMES[name]
    if name.startswith(".env."):
        return DOTENV
    suffix = name[name.rfind("."):] if "." in name[1:] else ""
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if _CREDENTIAL_JSON.fullmatch(name):
        return CREDENTIALS_FILE
    return next((rule for tail, rule in _PATHS.items() if lower == tail or lower.endswith("/" + tail)), "")


# --- by content ----------------------------------------------------------------------------------

ASSIGNMENT, AWS_SECRET = "password or token assignment", "aws secret access key"
# A string literal of 16 to 256 characters with no space, quote, backslash or brace, after `=`, `=>`
# or `:`: a candidate for an assignment to a name that says secret (checked by _assigned_secret).
_LITERAL = rb"""[!#-&(-\[\]-z|~]{16,256}+"""
_QUOTED = rb"""\s{0,3}[bru]?(?:"(?=%s")|'(?=%s'))""" % (_LITERAL, _LITERAL)

# (rule, expression). Every expression starts with a plain character and checks what precedes it
# with a look-behind: the expressions that start with the same character are searched together, and
# Python's re skips to the next such character in a tight loop. (One expression of all the rules
# searches the stdlib several times slower: re tries every byte against the set of first characters.)
# A rule's match must also pass _plausible; for ASSIGNMENT, _assigned_secret.
CONTENT_RULES: tuple[tuple[str, bytes], ...] = (
    ("private key", rb"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,300}?[A-Za-z0-9+/]{40}"),
    ("gitlab token", rb"-(?<=glpat-)[A-Za-z0-9_-]{20,}"),
    ("slack token", rb"-(?<=xox[baprs]-)[0-9]{6,}-[A-Za-z0-9-]{10,}"),
    ("anthropic api key", rb"-(?<=sk-)ant-[a-z]+[0-9]{2}-[A-Za-z0-9_-]{80,}"),
    ("pypi token", rb"-(?<=pypi-)AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ("aws access key id", rb"A(?<![A-Za-z0-9]A)[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ("google api key", rb"A(?<![A-Za-z0-9]A)Iza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
    ("github token", rb"_(?<=gh[pousr]_)[A-Za-z0-9]{36,}"),
    ("hugging face token", rb"_(?<=hf_)(?<![A-Za-z0-9_]hf_)[A-Za-z0-9]{34}(?![A-Za-z0-9_])"),
    ("github token", rb"_(?<=github_)pat_[A-Za-z0-9_]{60,}"),
    ("npm token", rb"_(?<=npm_)[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    ("stripe live key", rb"_(?<=[sr]k_)live_[A-Za-z0-9]{20,}"),
    ("openai api key", rb"T(?<=[A-Za-z0-9_-]{12}T)3BlbkFJ[A-Za-z0-9_-]{16,}"),  # T3BlbkFJ: base64 of "OpenAI"
    ("slack webhook", rb"T(?<=hooks\.slack\.com/services/T)[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"),
    ("jwt", rb"J(?<=eyJ)[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}"),
    (ASSIGNMENT, rb"=>?" + _QUOTED),  # `name = "..."`, `name := "..."`, `"name" => "..."`
    (ASSIGNMENT, rb":" + _QUOTED),  # `"name": "..."`, `name: "..."`
)
_ASSIGNED_TO = re.compile(  # what precedes the literal: `name = `, `"name": `, `name: str = `
    rb"""[A-Za-z0-9_]*(?i:passw(?:or)?d|secret|token|api_?key|access_?key|private_?key)[A-Za-z0-9_]*["']?\]?"""
    rb"""\s*(?::\s*[A-Za-z_]\w*\s*)?(?:=|:=|=>|:)\s*[bru]?\Z"""
)
_ASSIGN_LOOKBACK = 80  # bytes before the literal searched for the name it is assigned to
_NAME_WORDS = (b"passw", b"secret", b"token", b"key")  # one of them is in every name _ASSIGNED_TO takes


@functools.cache  # compiled on first use: commands that never read a file do not pay for it
def _passes() -> list[tuple[re.Pattern[bytes], list[tuple[str, re.Pattern[bytes]]]]]:
    """One search per first character, tokens before assignments (so a token is named for its kind)."""
    groups: dict[bytes, list[tuple[str, bytes]]] = {}
    for rule, pattern in CONTENT_RULES:
        groups.setdefault(pattern[:1], []).append((rule, pattern))
    return [
        (re.compile(re.escape(first) + b"(?:" + b"|".join(p[1:] for _, p in rules) + b")"),
         [(rule, re.compile(p)) for rule, p in rules])
        for first, rules in groups.items()
    ]


def find_secret(data: bytes) -> str:
    """The name of the first built-in rule that finds a secret in `data`, or ""."""
    for search, rules in _passes():
        for match in search.finditer(data):
            at = match.start()
            rule, found = next((rule, found) for rule, regex in rules if (found := regex.match(data, at)))
            if rule == ASSIGNMENT:
                rule = _assigned_secret(data, found.end() - 1)
            elif not _plausible(found.group(), assignment=False):
                rule = ""
            if rule:
                return rule
    return ""


def _assigned_secret(data: bytes, quote: int) -> str:
    """The rule for the string literal opening at `quote` if it is a random-looking value assigned to
    a name that says secret, else ""."""
    close = data.index(data[quote:quote + 1], quote + 1)
    start = max(0, quote - _ASSIGN_LOOKBACK)
    start = max(start, data.rfind(b"\n", start, quote) + 1)  # the name is on the same line
    before = data[start:quote].lower()
    if not any(word in before for word in _NAME_WORDS):  # most literals: no regular expression needed
        return ""
    named = _ASSIGNED_TO.search(data, start, quote)
    name = named.group().lower() if named else b""
    if not name or b"public" in name or not _plausible(data[quote + 1:close], assignment=True):
        return ""
    return AWS_SECRET if b"aws" in name and close - quote - 1 == 40 else ASSIGNMENT


# A literal holding one of these words (lower case) is a placeholder or a name, not a secret.
_PLACEHOLDERS = (
    "example", "sample", "dummy", "fake", "placeholder", "changeme", "change_me", "change-me", "your", "xxxx",
    "***", "...", "redacted", "test", "mock", "secret", "passw", "token", "insert", "replace", "todo", "fixme",
)
_WORD_BREAK = re.compile(r"[-_.:/+=@]")
_HEX = re.compile(r"[0-9a-fA-F]{16,31}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MIN_ENTROPY = 3.0  # bits per character: random base62 of 16+ characters scores about 3.8, "aaaa..." 0


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _plausible(value: bytes, assignment: bool) -> bool:
    """Whether a matched value looks like a real secret rather than a placeholder, a name or a date."""
    text = value.decode("ascii", "replace")
    lower = text.lower()
    if any(word in lower for word in _PLACEHOLDERS) or _entropy(text) < MIN_ENTROPY:
        return False
    if not assignment:
        return True
    # A literal assigned to `password`, `token` ... : letters and digits, not a URL or path, and not
    # made of short words ("v1.2.3-beta", "2024-01-01T00:00", "MY_APP_KEY_2").
    has_letter = any(c.isalpha() for c in text)
    has_digit = any(c.isdigit() for c in text)
    if not (has_letter and has_digit) or "://" in text or text[0] in "/.~":
        return False
    if _HEX.fullmatch(text):  # short hex strings and UUIDs are ids and hashes far more often than keys
        return False
    return any(len(word) > 8 for word in _WORD_BREAK.split(text))


@dataclass(frozen=True)
class SecretRules:
    """The rules of one run: the built-in ones, the user's extra content patterns, and allowed paths."""

    patterns: tuple[re.Pattern[bytes], ...] = ()
    allow: pathspec.GitIgnoreSpec | None = None

    def allows(self, path: str) -> bool:
        """Whether the user declared `path` (repo-relative) safe: it is never judged."""
        return self.allow is not None and self.allow.match_file(path)

    def name_rule(self, path: str) -> str:
        return "" if self.allows(path) else name_rule(path)

    def content_rule(self, data: bytes, path: str = "") -> str:
        """The first rule that finds a secret in `data` (a file at repo-relative `path`), or ""."""
        if path and self.allows(path):
            return ""
        rule = find_secret(data)
        if rule:
            return rule
        for n, pattern in enumerate(self.patterns):
            if pattern.search(data):
                return f"secret_patterns[{n}]"
        return ""


BUILTIN = SecretRules()


def compile_patterns(patterns: Sequence[str], source: str = "secret_patterns") -> tuple[re.Pattern[bytes], ...]:
    """The user's extra content patterns as bytes expressions; a bad one is a one-line error."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern.encode("utf-8")))
        except re.error as exc:
            raise CodesearchError(f"{source}: bad regular expression {pattern!r}: {exc}") from None
    return tuple(compiled)


def compile_allow(globs: Sequence[str], source: str = "secret_allow") -> pathspec.GitIgnoreSpec | None:
    """Paths declared safe, in gitignore syntax; a bad pattern is a one-line error."""
    if not globs:
        return None
    import pathspec  # here: settings are loaded by every command, and most never need it
    from pathspec.patterns.gitignore import GitIgnorePatternError

    try:
        return pathspec.GitIgnoreSpec.from_lines(globs)
    except GitIgnorePatternError as exc:
        raise CodesearchError(f"{source}: bad pattern: {exc}") from None


@functools.lru_cache(maxsize=16)
def _rules(patterns: tuple[str, ...], allow: tuple[str, ...]) -> SecretRules:
    return SecretRules(compile_patterns(patterns), compile_allow(allow))


def fingerprint(settings: Settings) -> str:
    """A digest that changes whenever what counts as a secret in a file's content changes (the
    built-in rules or the settings): files indexed under other rules must be read again."""
    if not settings.skip_secrets:
        return "off"
    key = (RULES_VERSION, CONTENT_RULES, _PLACEHOLDERS, MIN_ENTROPY, settings.secret_patterns, settings.secret_allow)
    return hashlib.sha256(repr(key).encode()).hexdigest()[:16]


def rules_for(settings: Settings) -> SecretRules | None:
    """The rules `settings` ask for, or None when secrets are not skipped (`skip_secrets = false`)."""
    if not settings.skip_secrets:
        return None
    return _rules(tuple(settings.secret_patterns), tuple(settings.secret_allow))
