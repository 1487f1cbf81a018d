"""Secrets never enter the index: real files in a copy of the sample repository, the real walk,
indexer and LanceDB store, and the CLI as a user runs it.

Every secret below is put together at run time from a seeded random generator, so that this file
holds none (and is not itself taken for one, by us or by a host's secret scanning).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from codesearch import secrets
from codesearch.config import Settings
from codesearch.files import NOT_CODE, SourceFile, scope_of, walk
from codesearch.indexer import build_index, update_files, walk_options
from codesearch.store import Store
from conftest import SAMPLE_REPO

_rng = random.Random(8)
ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


BEGIN, END = "-----" + "BEGIN", "-----" + "END"
PEM_BODY = "\n".join(rand(64, ALNUM + "+/") for _ in range(6))
PEM_ESCAPED = PEM_BODY.replace("\n", "\\n")  # as a one-line string literal spells it
AWS_ID = "AK" + "IA" + rand(16, string.ascii_uppercase + string.digits)
AWS_SECRET = rand(40, ALNUM + "/+")
GITHUB = "gh" + "p_" + rand(36)
GITHUB_PAT = "github" + "_pat_" + rand(22) + "_" + rand(59)
GITLAB = "gl" + "pat-" + rand(20)
SLACK = "xo" + "xb-" + rand(12, string.digits) + "-" + rand(13, string.digits) + "-" + rand(24)
SLACK_HOOK = "https://hooks.slack.com/services/T" + rand(8, "ABCDEFGH") + "/B" + rand(9, "ABCDEFG") + "/" + rand(24)
STRIPE = "sk" + "_live_" + rand(24)
GOOGLE = "AI" + "za" + rand(35)
OPENAI = "sk-" + "proj-" + rand(20) + "T3Blbk" + "FJ" + rand(20)
ANTHROPIC = "sk-" + "ant-api03-" + rand(90)
HUGGING_FACE = "h" + "f_" + rand(34)
NPM = "np" + "m_" + rand(36)
PYPI = "py" + "pi-AgEIcHlwaS5vcmc" + rand(60)
JWT = "ey" + "J" + rand(30) + ".ey" + "J" + rand(40) + "." + rand(43)
PASSWORD = rand(12) + "7" + rand(7)

# (file, content, the secret in it, the rule that must find it): one of each kind, in code files.
POSITIVE = [
    ("keys/embedded.py", f'KEY = """{BEGIN} RSA PRIVATE KEY-----\n{PEM_BODY}\n{END} RSA PRIVATE KEY-----"""\n',
     PEM_BODY.split("\n")[2], "private key"),
    ("keys/escaped.js", f'const key = "{BEGIN} PRIVATE KEY-----\\n{PEM_ESCAPED}";\n',
     PEM_BODY.split("\n")[3], "private key"),
    ("cloud/aws.go", f'package cloud\n\nconst accessKeyID = "{AWS_ID}"\n', AWS_ID, "aws access key id"),
    ("cloud/aws_secret.py", f'aws_secret_access_key = "{AWS_SECRET}"\n', AWS_SECRET, "aws secret access key"),
    ("ci/github.js", f'const client = new Octokit({{ auth: "{GITHUB}" }});\n', GITHUB, "github token"),
    ("ci/github_pat.py", f'HEADERS = {{"Authorization": "Bearer {GITHUB_PAT}"}}\n', GITHUB_PAT, "github token"),
    ("ci/gitlab.go", f'package ci\n\nvar gitlab = "{GITLAB}"\n', GITLAB, "gitlab token"),
    ("chat/slack.py", f'client = WebClient("{SLACK}")\n', SLACK, "slack token"),
    ("chat/hook.js", f'fetch("{SLACK_HOOK}", {{method: "POST"}});\n', SLACK_HOOK, "slack webhook"),
    ("pay/stripe.rb", f'Stripe.api_key = "{STRIPE}"\n', STRIPE, "stripe live key"),
    ("maps/google.ts", f'const maps = load({{key: "{GOOGLE}"}});\n', GOOGLE, "google api key"),
    ("ai/openai.py", f'client = OpenAI(api_key="{OPENAI}")\n', OPENAI, "openai api key"),
    ("ai/anthropic.js", f'const client = new Anthropic({{apiKey: "{ANTHROPIC}"}});\n', ANTHROPIC, "anthropic api key"),
    ("ai/hub.py", f'login("{HUGGING_FACE}")\n', HUGGING_FACE, "hugging face token"),
    ("pkg/npm.js", f'// publish with {NPM}\nmodule.exports = {{}};\n', NPM, "npm token"),
    ("pkg/pypi.py", f'TWINE = "{PYPI}"\n', PYPI, "pypi token"),
    ("auth/session.go", f'package auth\n\nfunc Token() string {{\n\treturn "{JWT}"\n}}\n', JWT, "jwt"),
    ("db/settings.py", f'DB_PASSWORD = "{PASSWORD}"\n', PASSWORD, "password or token assignment"),
    ("db/config.js", f'module.exports = {{ apiKey: "{PASSWORD}" }};\n', PASSWORD, "password or token assignment"),
    ("db/conn.go", f'package db\n\nfunc connect() {{\n\ttoken := "{PASSWORD}"\n\t_ = token\n}}\n',
     PASSWORD, "password or token assignment"),
    ("db/wp.php", f"<?php\n$config = ['db_password' => '{PASSWORD}'];\n", PASSWORD, "password or token assignment"),
]

# Code that talks about secrets, or holds stand-ins for them, and must be indexed.
NEGATIVE = {
    "ok/docstring.py": (
        'def login(user, password):\n'
        '    """Check the password: at least 12 characters. The token expires after an hour."""\n'
        '    return verify(user, password)\n'
    ),
    "ok/placeholders.py": (
        'API_KEY = "your-api-key-here-0123456789"\npassword = "changeme"\ntoken = "<YOUR_TOKEN_123456789>"\n'
        'SECRET_KEY = "xxxxxxxxxxxxxxxxxxxxxxxx"\nDOCS_KEY = "AKIAIOSFODNN7' + 'EXAMPLE"\n'
        'GH = "ghp_' + "x" * 36 + '"\nDB_PASSWORD = "replace-me-with-a-real-one-42"\n'
    ),
    "ok/env.py": (
        'import os\n\npassword = os.environ["DB_PASSWORD"]\ntoken = os.getenv("GITHUB_TOKEN")\n'
        'api_key = settings.API_KEY\n'
    ),
    "ok/names.py": (
        'TOKEN_ENV = "GITHUB_TOKEN_V2_PRODUCTION"\ntoken_pattern = "[A-Za-z0-9_]{16,}"\n'
        'token_url = "https://oauth2.googleapis.com/token"\ntoken_expiry = "2024-01-01T00:00:00Z"\n'
        'request_token = "123e4567-e89b-12d3-a456-426614174000"\ntoken_sha = "5d41402abc4b2a76"\n'
        'tokenizer_name = "bert-base-multilingual-cased"\npublicKeyToken = "b77a5c561934e089b77a5c561934e089"\n'
    ),
    "ok/lexer.js": (
        'function nextToken(src) {\n  const token = src.match(/^[a-z]+/);\n  return token ? token[0] : null;\n}\n'
    ),
    "ok/pem.go": (
        'package ok\n\nconst header = "' + BEGIN + ' PRIVATE KEY-----"\n\n'
        'func isKey(s string) bool { return strings.HasPrefix(s, header) }\n'
    ),
}

FILES_BY_NAME = {  # not code: counted as secrets by name, never indexed either way
    ".env": "DB_PASSWORD=hunter2\n", "deploy/.env.production": "X=1\n", "keys/server.pem": "x\n",
    "keys/id_ed25519": "x\n", ".aws/credentials": "[default]\n", "gcp/client_secret_123.apps.json": "{}\n",
    "infra/prod.tfvars": "x = 1\n",
}
NOT_SECRET_BY_NAME = {".env.example": "DB_PASSWORD=\n", "keys/id_ed25519.pub": "ssh-ed25519 AAAA\n"}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def rows(repo: Path, settings: Settings) -> list[dict]:
    """Every chunk row of the real store, vectors left out."""
    table = Store.open(settings.index_path(repo)).chunks.to_arrow().drop_columns(["vector"])
    return table.to_pylist()


def stored_text(repo: Path, settings: Settings) -> str:
    """Everything the index holds as text: paths, code, docstrings, signatures, full-text fields."""
    store = Store.open(settings.index_path(repo))
    texts = [str(value) for row in rows(repo, settings) for value in row.values()]
    return "\n".join(texts + list(store.file_states()))


@pytest.fixture(scope="module")
def settings(tiny_model) -> Settings:
    return Settings(model=str(tiny_model), threads=1)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, settings):
    """The sample repository with every case of this file added, indexed once: (root, report)."""
    root = tmp_path_factory.mktemp("secrets") / "repo"
    shutil.copytree(SAMPLE_REPO, root, ignore=shutil.ignore_patterns(".codesearch"))
    write(root, {path: text for path, text, _, _ in POSITIVE} | NEGATIVE | FILES_BY_NAME | NOT_SECRET_BY_NAME)
    return root, build_index(root, settings)


@pytest.mark.parametrize(("path", "content", "secret", "rule"), POSITIVE, ids=[p[0] for p in POSITIVE])
def test_a_secret_in_code_keeps_the_file_out_of_the_index(indexed, settings, path, content, secret, rule):
    root, report = indexed
    assert (path, "secret") in report.skipped_paths
    assert report.secret_rules[path] == rule
    assert path not in {row["path"] for row in rows(root, settings)}
    assert path not in Store.open(settings.index_path(root)).file_states()
    assert secret not in stored_text(root, settings)


@pytest.mark.parametrize("path", NEGATIVE)
def test_code_that_only_talks_about_secrets_is_indexed(indexed, settings, path):
    root, report = indexed
    assert path in Store.open(settings.index_path(root)).file_states()
    assert path not in report.secret_rules


def test_the_report_counts_secrets_by_name_and_by_content(indexed):
    _, report = indexed
    assert report.skipped["secret"] == len(POSITIVE) + len(FILES_BY_NAME)
    assert {p: report.secret_rules[p] for p in FILES_BY_NAME} == {
        ".env": "dotenv file", "deploy/.env.production": "dotenv file", "keys/server.pem": "key file",
        "keys/id_ed25519": "key file", ".aws/credentials": "credentials file",
        "gcp/client_secret_123.apps.json": "credentials file", "infra/prod.tfvars": "credentials file",
    }
    assert not set(NOT_SECRET_BY_NAME) & {p for p, _ in report.skipped_paths}
    assert report.files_changed == 12 + len(NEGATIVE)  # the sample repository and the clean cases


def test_secret_allow_lets_a_path_through(tmp_path, repo, settings):
    write(repo, {"fixtures/fake_keys.py": f'TEST_TOKEN = "{GITHUB}"\n', "fixtures/.env": "X=1\n",
                 "src/real.py": f'TOKEN = "{GITHUB}"\n'})
    allowed = dataclasses.replace(settings, secret_allow=("fixtures/",))
    report = build_index(repo, allowed)
    assert [p for p, r in report.skipped_paths if r == "secret"] == ["src/real.py"]
    assert "fixtures/fake_keys.py" in Store.open(allowed.index_path(repo)).file_states()


def test_a_file_that_gains_a_secret_loses_its_rows(repo, settings):
    build_index(repo, settings)
    path = repo / "py" / "retry.py"
    assert "py/retry.py" in {row["path"] for row in rows(repo, settings)}
    path.write_text(path.read_text() + f'\nSTRIPE_KEY = "{STRIPE}"\n')
    report = build_index(repo, settings)
    assert report.skipped["secret"] == 1 and report.secret_rules == {"py/retry.py": "stripe live key"}
    assert report.files_deleted == 1
    assert "py/retry.py" not in {row["path"] for row in rows(repo, settings)}
    assert STRIPE not in stored_text(repo, settings)


def test_the_daemon_path_agrees(repo, settings):
    """update_files (the daemon's per-save path, through scope_of) drops a file that gains a secret
    and counts a saved .env, as a full run would."""
    build_index(repo, settings)
    (repo / "js" / "http.js").write_text(f'const token = "{GITLAB}";\n')
    (repo / ".env").write_text("X=1\n")
    report = update_files(repo, settings, ["js/http.js", ".env"])
    assert report.skipped["secret"] == 2 and report.secret_rules["js/http.js"] == "gitlab token"
    assert "js/http.js" not in {row["path"] for row in rows(repo, settings)}


def test_scope_of_gives_the_walks_verdict(indexed, settings):
    root, _ = indexed
    walked = walk(root, **walk_options(settings))
    reasons = dict(walked.skipped_paths)
    for path in [*FILES_BY_NAME, *NOT_SECRET_BY_NAME, *NEGATIVE, POSITIVE[0][0]]:
        verdict = scope_of(root, path, **walk_options(settings))
        if isinstance(verdict, SourceFile):
            assert verdict in walked.files, path
        else:
            assert verdict == reasons.get(path, NOT_CODE), path
    assert scope_of(root, ".env", **walk_options(settings)) == "secret"
    assert scope_of(root, ".env.example", **walk_options(settings)) == NOT_CODE


def test_new_secret_rules_make_every_file_read_again(repo, settings):
    (repo / "py" / "vendor_keys.py").write_text(f'LICENSE = "ACME-{rand(32, "0123456789ABCDEF")}"\n')
    first = build_index(repo, settings)
    assert first.skipped["secret"] == 0
    stricter = dataclasses.replace(settings, secret_patterns=("ACME-[0-9A-F]{32}",))
    again = build_index(repo, stricter)
    assert again.files_read == 12 and again.chunks_embedded == 0  # read, none re-embedded
    assert again.secret_rules == {"py/vendor_keys.py": "secret_patterns[0]"} and again.files_deleted == 1
    assert build_index(repo, stricter).files_read == 0  # once


def test_skip_secrets_off_indexes_them(repo, settings):
    (repo / ".env").write_text("X=1\n")
    (repo / "py" / "keys.py").write_text(f'TOKEN = "{GITHUB}"\n')
    report = build_index(repo, dataclasses.replace(settings, skip_secrets=False))
    assert report.skipped["secret"] == 0
    assert "py/keys.py" in Store.open(settings.index_path(repo)).file_states()


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def leaky_repo(repo) -> Path:
    write(repo, {".env": f"GITHUB_TOKEN={GITHUB}\n", "py/deploy.py": f'DEPLOY_TOKEN = "{GITHUB}"\n',
                 "blob.py": "x = 1\n"})
    (repo / "blob.py").write_bytes(b"\0binary")
    return repo


def test_summary_mentions_secrets_first_and_show_skipped_lists_them(leaky_repo, run):
    code, out, err = run("index", str(leaky_repo), "--show-skipped")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[1] == "skipped: 2 secret, 1 binary"
    assert lines[2:] == ["secret (2):", "  .env  (dotenv file)", "  py/deploy.py  (github token)",
                         "binary (1):", "  blob.py"]
    assert GITHUB not in out


def test_json_carries_each_skipped_path_and_its_rule(leaky_repo, run):
    code, out, err = run("index", str(leaky_repo), "--json")
    report = json.loads(out)
    assert code == 0 and report["skipped"] == {"secret": 2, "binary": 1}
    assert report["skipped_paths"] == [
        {"path": ".env", "reason": "secret", "rule": "dotenv file"}, {"path": "blob.py", "reason": "binary"},
        {"path": "py/deploy.py", "reason": "secret", "rule": "github token"},
    ]
    assert "secret_rules" not in report and GITHUB not in out


def test_dry_run_reports_secrets_too(leaky_repo, run):
    code, out, err = run("index", str(leaky_repo), "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["skipped_counts"] == {"secret": 2, "binary": 1}
    assert {"path": "py/deploy.py", "reason": "secret", "rule": "github token"} in plan["skipped"]
    assert "py/deploy.py" not in {f["path"] for f in plan["files"]}
    code, out, err = run("index", str(leaky_repo), "--dry-run", "--show-skipped")
    assert "skipped: 2 secret, 1 binary" in out and "  py/deploy.py  (github token)" in out
    assert not (leaky_repo / ".codesearch").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('secret_patterns = ["ok", "(unclosed"]', "'secret_patterns': bad regular expression '(unclosed': missing )"),
        ('secret_allow = ["fixtures\\\\"]', "'secret_allow': bad pattern"),
        ("skip_secrets = 'maybe'", "'skip_secrets' must be true or false"),
    ],
)
def test_bad_secret_settings_are_one_line_and_exit_2(repo, run, toml, message):
    (repo / ".codesearch.toml").write_text(toml + "\n")
    code, out, err = run("index", str(repo))
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("codesearch: error: ") and message in err


# --- the scanner on its own ----------------------------------------------------------------------


def test_this_code_base_holds_no_secret():
    """Our own sources (rules, tests, trainer) are not taken for secrets: the rules are spelled so."""
    repo = Path(__file__).parent.parent
    found = {}
    for file in walk(repo, extra_ignores=["tests/fixtures/", "runs/", "models/"]).files:
        data = file.abs_path.read_bytes()
        if rule := secrets.BUILTIN.content_rule(data, file.path):
            found[file.path] = rule
    assert found == {}


def test_user_patterns_are_named_by_position_never_by_text():
    rules = secrets.SecretRules(secrets.compile_patterns(["nothing", "internal-[0-9]{6}"]))
    assert rules.content_rule(b'x = "internal-123456"') == "secret_patterns[1]"
    assert rules.content_rule(b'x = "internal-12"') == ""


FRAGMENTS = [
    b'password = "', b"token: '", b'"api_key" => "', b"-----BEGIN RSA PRIVATE KEY-----\n", b"AKIA", b"AIza",
    b"ghp_", b"github_pat_", b"glpat-", b"xoxb-123456789-", b"sk_live_", b"sk-ant-api03-", b"T3BlbkFJ",
    b"hf_", b"npm_", b"pypi-AgEIcHlwaS5vcmc", b"eyJ", b".eyJ", b"hooks.slack.com/services/T", b'"', b"'", b"=",
    b":", b"\n", b" ", b"\\n", b"://", b"@", b"Authorization: ", b'"authorization": "', b"Bearer ", b"Basic ",
    b"Token ", b"auth=(", b"HTTPBasicAuth(", b"basic_auth(", b"Some(", b", ", b"AccountKey=", b"&sig=", b"%2B",
    b"MIIEvQIBA", b"MIGHAgEA", b"MHcCAQEE", b"b3BlbnNzaC1rZXktdjE", b"{", b"$",
]


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(
    st.sampled_from(FRAGMENTS) | st.binary(max_size=40) | st.text(ALNUM + "+/_-", max_size=60).map(str.encode),
    max_size=30,
).map(b"".join))
def test_the_scanner_never_raises(data):
    assert isinstance(secrets.BUILTIN.content_rule(data, "x.py"), str)
    assert isinstance(secrets.name_rule(data.decode("utf-8", "replace")), str)
