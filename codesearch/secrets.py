"""What counts as a secret: files that hold credentials by name, and file contents that carry one.

Two layers, both on by default (`skip_secrets`). By name: dotenv files, private keys, credential and
token files (`.npmrc`, `.netrc`, `.aws/credentials`, ...), wherever they sit; a template such as
`.env.example` is not a secret. None of these is source code, so this layer only tells the user what
was kept out. By content: the bytes of every file about to be indexed are searched for private keys
(PEM blocks, or their base64 DER body alone), tokens of a recognisable shape (AWS, GitHub, GitLab,
Slack, Stripe, Google, OpenAI, Anthropic, Hugging Face, npm, PyPI, JWTs, Azure account keys and SAS
signatures), `password = "..."`-style assignments of a literal that looks random, URLs with a
password (`postgres://user:pw@host`), HTTP Authorization values (`Bearer ...`, `Basic <base64 of
user:pw>`) and basic-auth pairs (`auth=("user", "pw")`), then for the user's `secret_patterns`.
A false positive leaves a whole file of the user's code out of the index, so the content rules are
narrow: a known token shape that is not a placeholder ("ghp_xxxx..."); for an assignment a literal
of 16+ characters with letters and digits, some entropy, a run of more than 8 characters between
separators, no placeholder words ("changeme", "example", "<your key>", ...), and neither a short hex
id nor a UUID (over 256 characters: one random-looking base64 or hex run, _random_run); for a
password someone chose (URL, Basic, pair) 6+ characters that are no placeholder, template field,
masked value, default or the user name, and no documentation host (_chosen_password). Paths
matching `secret_allow` (gitignore syntax) are never judged. Only a rule's name is ever reported,
never the text it matched.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, unquote_to_bytes

from codesearch.errors import CodesearchError

if TYPE_CHECKING:
    import pathspec

    from codesearch.config import Settings

SECRET = "secret"  # the skip reason
RULES_VERSION = 2  # bump when the built-in rules change in a way the tables below do not show

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
PRIVATE_KEY, URL_PASSWORD, AUTH_HEADER = "private key", "password in url", "authorization header"
AZURE_KEY, AZURE_SAS, BASIC_AUTH = "azure key", "azure sas signature", "basic auth password"
# A string literal of 16+ characters with no space, quote, backslash or brace, after `=`, `=>` or
# `:`: a candidate for an assignment to a name that says secret (checked by _assigned_secret). The
# class holds no quote and the quantifier is possessive, so each literal is scanned once.
_LITERAL = rb"""[!#-&(-\[\]-z|~]{16,}+"""
_QUOTED = rb"""\s{0,3}[bru]?(?:"(?=%s")|'(?=%s'))""" % (_LITERAL, _LITERAL)
_B64_RUN = rb"(?:[A-Za-z0-9+/]|\\[nr]|\r?\n[ \t]{0,16})"  # a base64 body, also cut into lines
# What follows the header name: `Authorization: `, `"Authorization": "`, `("Authorization", "`.
_AUTH_NAME = rb"""z(?<=[Aa]uthoriz)(?<![\w:][Aa]uthoriz)ation["'`\]]{0,2}[ \t]{0,3}(?:=>|[:=,])[ \t]{0,3}"""
_AUTH_SCHEME = rb"""[bfr]?["'`]?[ \t]{0,3}"""  # then `Basic`, `Bearer`, `Token` ...
_BASIC = rb"[ \t]{1,3}([A-Za-z0-9+/]{8,512}={0,2})"  # after `Basic`: the base64 of user:password
_BEARER = rb"([A-Za-z0-9._~+/=-]{16,512})"  # RFC 6750's b64token, 16+ characters
_STRING = rb"""[bfru]?(?:"[^"\\\n]{0,128}"|'[^'\\\n]{0,128}')"""
# The arguments of a basic-auth pair: `("user", "pw")`, `(USER, "pw")`, `("user", Some("pw"))`.
_PAIR = rb"""[ \t]{0,3}(?:[A-Za-z_][\w.]{0,63}|%s)[ \t]{0,3},[ \t]{0,3}(?:Some\()?%s""" % (_STRING, _STRING)

# (rule, check, expression). Every expression starts with a plain character and checks what precedes
# it with a look-behind: the expressions that start with the same character are searched together,
# and Python's re skips to the next such character in a tight loop. (One expression of all the rules
# searches the stdlib several times slower: re tries every byte against the set of first characters.)
# Every quantifier is bounded or scans a class that its end cannot re-enter, so a search is linear.
# A match must also pass its check (_CHECKS; "assignment": _assigned_secret).
CONTENT_RULES: tuple[tuple[str, str, bytes], ...] = (
    (PRIVATE_KEY, "token", rb"-----BEGIN[A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,300}?[A-Za-z0-9+/]{40}"),
    ("gitlab token", "token", rb"-(?<=glpat-)[A-Za-z0-9_-]{20,}"),
    ("slack token", "token", rb"-(?<=xox[baprs]-)[0-9]{6,}-[A-Za-z0-9-]{10,}"),
    ("anthropic api key", "token", rb"-(?<=sk-)ant-[a-z]+[0-9]{2}-[A-Za-z0-9_-]{80,}"),
    ("pypi token", "token", rb"-(?<=pypi-)AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    ("aws access key id", "token", rb"A(?<![A-Za-z0-9]A)[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ("google api key", "token", rb"A(?<![A-Za-z0-9]A)Iza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
    # A DER private key in base64 without its PEM lines, known by the version field after its first
    # length: PKCS#1 and PKCS#8 (RSA, DSA), SEC1 and PKCS#8 EC, Ed25519/X25519; then key material.
    (PRIVATE_KEY, "token", rb"A(?<=MII[A-Za-z0-9+/]{3}IBA)[AD]" + _B64_RUN + rb"{100}"),
    (PRIVATE_KEY, "token", rb"A(?<=MI[GH][A-Za-z0-9+/]A)gE[AB]" + _B64_RUN + rb"{100}"),
    (PRIVATE_KEY, "token", rb"A(?<=M[A-Za-z0-9+/]{2}CA)Q(?:EE|Aw)" + _B64_RUN + rb"{40}"),
    (BASIC_AUTH, "pair", rb"A(?<=[a-z]A)uth\(" + _PAIR),  # HTTPBasicAuth(, SetBasicAuth(, DigestAuth(
    ("github token", "token", rb"_(?<=gh[pousr]_)[A-Za-z0-9]{36,}"),
    ("hugging face token", "token", rb"_(?<=hf_)(?<![A-Za-z0-9_]hf_)[A-Za-z0-9]{34}(?![A-Za-z0-9_])"),
    ("github token", "token", rb"_(?<=github_)pat_[A-Za-z0-9_]{60,}"),
    ("npm token", "token", rb"_(?<=npm_)[A-Za-z0-9]{36}(?![A-Za-z0-9])"),
    ("stripe live key", "token", rb"_(?<=[sr]k_)live_[A-Za-z0-9]{20,}"),
    (BASIC_AUTH, "pair", rb"_(?<=basic_)auth\(" + _PAIR),  # reqwest's .basic_auth("user", Some("pw"))
    ("openai api key", "token", rb"T(?<=[A-Za-z0-9_-]{12}T)3BlbkFJ[A-Za-z0-9_-]{16,}"),  # base64 of "OpenAI"
    ("slack webhook", "token", rb"T(?<=hooks\.slack\.com/services/T)[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"),
    ("jwt", "token", rb"J(?<=eyJ)[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}"),
    (ASSIGNMENT, "assignment", rb"=>?" + _QUOTED),  # `name = "..."`, `name := "..."`, `"name" => "..."`
    (AZURE_KEY, "azure", rb"=(?<=[Aa]ccount[Kk]ey=)([A-Za-z0-9+/]{20,512}={0,2})"),  # connection strings
    (AZURE_KEY, "azure", rb"=(?<=SharedAccessKey=)([A-Za-z0-9+/]{20,512}={0,2})"),
    (AZURE_SAS, "sas", rb"=(?<=[?&]sig=)([A-Za-z0-9%+/]{30,512})"),  # a SAS URL's signature
    (BASIC_AUTH, "pair", rb"=(?<=[Aa]uth=)[ \t]{0,3}[(\[]" + _PAIR),  # auth=(...), basic_auth=(...)
    (BASIC_AUTH, "pair", rb"=(?<=[Aa]uth =)[ \t]{0,3}[(\[]" + _PAIR),
    (ASSIGNMENT, "assignment", rb":" + _QUOTED),  # `"name": "..."`, `name: "..."`
    (URL_PASSWORD, "url", rb"""://(?<=[A-Za-z0-9]://)([^\s:/?#@"'`<>\\]{0,64}):([^\s/?#@"'`<>\\]{1,128})"""
                          rb"""@([A-Za-z0-9\[][A-Za-z0-9.:\[\]_-]{0,253})"""),  # scheme://user:password@host
    (PRIVATE_KEY, "token", rb"z(?<=b3BlbnNz)aC1rZXktdjE" + _B64_RUN + rb"{40}"),  # base64 of "openssh-key-v1"
    (AUTH_HEADER, "basic", _AUTH_NAME + _AUTH_SCHEME + rb"[Bb]asic" + _BASIC),
    (AUTH_HEADER, "bearer", _AUTH_NAME + _AUTH_SCHEME + rb"(?:[Bb]earer|[Tt]oken|Bot)[ \t]{1,3}" + _BEARER),
    (AUTH_HEADER, "literal", _AUTH_NAME + rb"""[bfr]?["'`]""" + _BEARER + rb"""["'`]"""),  # no scheme
    (AUTH_HEADER, "basic", rb"B(?<![A-Za-z0-9_]B)asic" + _BASIC),  # `Basic ...` and `Bearer ...` anywhere
    (AUTH_HEADER, "bearer", rb"B(?<![A-Za-z0-9_]B)earer[ \t]{1,3}" + _BEARER),
)
_ASSIGNED_TO = re.compile(  # what precedes the literal: `name = `, `"name": `, `name: str = `
    rb"""[A-Za-z0-9_]*(?i:passw(?:or)?d|secret|token|(?:api|access|private|signing|encryption|master|hmac)_?key)"""
    rb"""[A-Za-z0-9_]*["']?\]?\s*(?::\s*[A-Za-z_]\w*\s*)?(?:=|:=|=>|:)\s*[bru]?\Z"""
)
_ASSIGN_LOOKBACK = 80  # bytes before the literal searched for the name it is assigned to
_NAME_WORDS = (b"passw", b"secret", b"token", b"key")  # one of them is in every name _ASSIGNED_TO takes


@functools.cache  # compiled on first use: commands that never read a file do not pay for it
def _passes() -> list[tuple[re.Pattern[bytes], list[tuple[str, str, re.Pattern[bytes]]]]]:
    """One search per first character, tokens before assignments (so a token is named for its kind)."""
    groups: dict[bytes, list[tuple[str, str, bytes]]] = {}
    for rule, check, pattern in CONTENT_RULES:
        groups.setdefault(pattern[:1], []).append((rule, check, pattern))
    return [
        (re.compile(re.escape(first) + b"(?:" + b"|".join(p[1:] for _, _, p in rules) + b")"),
         [(rule, check, re.compile(p)) for rule, check, p in rules])
        for first, rules in groups.items()
    ]


def find_secret(data: bytes) -> str:
    """The name of the first built-in rule that finds a secret in `data`, or ""."""
    for search, rules in _passes():
        for match in search.finditer(data):
            at = match.start()
            rule, check, found = next((r, c, found) for r, c, regex in rules if (found := regex.match(data, at)))
            if check == "assignment":
                rule = _assigned_secret(data, found.end() - 1)
            elif not _CHECKS[check](found):
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
LONG_LITERAL = 256  # an assigned literal longer than this must be one random-looking run (_random_run)
_RUN = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")  # base64, base64url or hex
_HEX_RUN = re.compile(r"[0-9a-fA-F]+")
RUN_ENTROPY, HEX_RUN_ENTROPY = 4.5, 3.5  # random base64 scores about 5.9, random hex 4.0, paths of words 4
# The base64 of media files (PNG, JPEG, GIF, SVG, XML, WebP, WOFF, WOFF2, ICO, PDF, TTF, OTF): an icon
# embedded in a web page is random-looking, and public.
_MEDIA = ("iVBORw0KGgo", "/9j/", "R0lGOD", "PHN2Zy", "PD94bWw", "UklGR", "d09GRg", "d09GMg", "AAABAA", "JVBERi0",
          "AAEAAA", "T1RUTw")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _plausible(value: bytes, assignment: bool, ids: bool = False) -> bool:
    """Whether a matched value looks like a real secret rather than a placeholder, a name or a date.
    `ids`: short hex strings and UUIDs count (in an Authorization header they are tokens)."""
    text = value.decode("ascii", "replace")
    if assignment and len(text) > LONG_LITERAL:
        return _random_run(text)
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
    if not ids and _HEX.fullmatch(text):  # short hex strings and UUIDs are ids and hashes far more often
        return False
    return any(len(word) > 8 for word in _WORD_BREAK.split(text))


def _random_run(text: str) -> bool:
    """Whether a long literal is one random-looking run of base64 or hex (a key, a certificate's secret
    half), not a media file, a path or URL, a repeated pattern or filler. Prose, SQL and HTML hold
    spaces and never get here."""
    if not _RUN.fullmatch(text) or text.startswith(_MEDIA):
        return False
    if _entropy(text) < (HEX_RUN_ENTROPY if _HEX_RUN.fullmatch(text) else RUN_ENTROPY):
        return False
    sample = text[:4096]
    if len({sample[i:i + 8] for i in range(len(sample) - 7)}) < len(sample) // 2:  # "0123456789abcdef" * 20
        return False
    # Short placeholder words turn up by chance in kilobytes of base64: those count only as a piece's start.
    lower = text.lower()
    return not any(word in lower for word in _PLACEHOLDERS if len(word) > 5) and not any(
        piece.startswith(_PLACEHOLDERS) for piece in _WORD_BREAK.split(lower))


# A password someone chose, as opposed to a placeholder, a template field, a masked value or a
# well-known default: at least MIN_PASSWORD characters, and none of these.
MIN_PASSWORD = 6
_TEMPLATE = re.compile(r"[{}<>\[\]]|\$[({\w]|%[(sd]|#\{|\A:")  # {pw} <pw> [pw] ${PW} $PW %s %(pw)s #{pw} :pw
_PASSWORD_PLACEHOLDERS = (*_PLACEHOLDERS, "pass", "pwd")
_DEFAULT_PASSWORDS = frozenset((
    "admin", "administrator", "root", "guest", "default", "demo", "postgres", "mysql", "redis", "rabbitmq",
    "elastic", "oracle", "qwerty", "letmein", "123456", "1234567", "12345678", "123456789", "open sesame",
))
# Values published as public: the key of Azure's storage emulator (Azurite), by its sha256.
_PUBLISHED = frozenset(("0011cc25eb4320717494d2703e8cba85743e71b500283c21c8b88147992f9059",))


def _chosen_password(password: str, user: str = "") -> bool:
    """Whether `password` (of `user`) looks chosen by someone, so worth keeping out."""
    lower = password.lower()
    return (
        len(password) >= MIN_PASSWORD and len(set(password)) > 1 and lower != user.lower()
        and lower not in _DEFAULT_PASSWORDS and not _TEMPLATE.search(password)
        and not any(word in lower for word in _PASSWORD_PLACEHOLDERS)
    )


def _documentation_host(host: str) -> bool:
    """Whether a URL's host is reserved for documentation (RFC 2606: example.com, *.example, *.test,
    *.invalid) or a bare `host`: the URL is an example, whatever its password."""
    name = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    labels = name.rstrip(".").split(".")
    return "example" in labels or labels[-1] in ("test", "invalid") or name in ("host", "hostname")


_PORT_LIST = re.compile(r"[0-9]{1,5},")


def _url_value(found: re.Match[bytes]) -> bool:
    """`scheme://user:password@host`: a chosen password, not for a documentation host."""
    user, password, host = (unquote(group.decode("utf-8", "replace")) for group in found.groups())
    if _PORT_LIST.match(password):  # `scheme://host:123,host2:456@...`: a multi-host list, no password
        return False
    return not _documentation_host(host) and _chosen_password(password, user)


def _basic_value(found: re.Match[bytes]) -> bool:
    """`Basic` credentials: the base64 of `user:password`, with a chosen password."""
    try:
        decoded = base64.b64decode(found.group(1), validate=True).decode("ascii")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return False
    user, colon, password = decoded.partition(":")
    return bool(colon) and decoded.isprintable() and _chosen_password(password, user)


_QUOTED_ARG = re.compile(rb""""([^"]*)"|'([^']*)'""")


def _pair_value(found: re.Match[bytes]) -> bool:
    """A basic-auth pair `("user", "password")` (or `(USER, "password")`): a chosen password."""
    args = [(a or b).decode("utf-8", "replace") for a, b in _QUOTED_ARG.findall(found.group())]
    return _chosen_password(args[-1], args[0] if len(args) > 1 else "")


_CHECKS: dict[str, Callable[[re.Match[bytes]], bool]] = {
    "token": lambda found: _plausible(found.group(), assignment=False),
    "bearer": lambda found: _plausible(found.group(1), assignment=True, ids=True),
    "literal": lambda found: _plausible(found.group(1), assignment=True),
    "basic": _basic_value,
    "url": _url_value,
    "pair": _pair_value,
    "azure": lambda found: (hashlib.sha256(found.group(1)).hexdigest() not in _PUBLISHED
                            and _plausible(found.group(1), assignment=False)),
    "sas": lambda found: (len(value := unquote_to_bytes(found.group(1))) >= 40
                          and _plausible(value, assignment=False)),
}


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
