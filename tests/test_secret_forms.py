"""The credential forms that are not tokens of a known shape (issue 24, item 5): long assignment
literals, private key bodies without their PEM armour, URLs with a password, HTTP Authorization header
values, Azure account keys and SAS signatures, and basic-auth pairs; with the near-misses that must
stay indexable (placeholders, documentation examples, variables, environment lookups).

The table runs through the real rule engine; one test indexes a real repository holding one file of
each kind with the real indexer and LanceDB store, and queries it through the CLI. Every secret is put
together at run time from a seeded generator, so that this file holds none (see test_secrets.py).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import string

import pytest

from codesearch import secrets
from codesearch.config import Settings
from codesearch.indexer import build_index
from codesearch.store import Store
from conftest import SAMPLE_REPO

_rng = random.Random(24)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def b64(n: int) -> str:
    """Base64 of `n` random bytes, as a key or signature is spelled."""
    return base64.b64encode(bytes(_rng.randrange(256) for _ in range(n))).decode()


PW = rand(9) + "4" + rand(4)  # a password someone chose: 14 characters, not a word
PW2 = rand(7) + "9"
TOKEN = rand(30) + "7" + rand(9)
LONG_B62 = rand(300)
LONG_B64 = b64(400)  # 536 characters
LONG_HEX = rand(600, "0123456789abcdef")
# Base64 bodies of DER private keys: the fixed ASN.1 prefix of each form, then key material.
RSA_PKCS8 = "MIIEvg" + "IBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQ" + b64(1100)
RSA_PKCS1_LINES = "\\n".join(("MIIEpA" + "IBAAKCAQEA" + b64(1200))[i:i + 64] for i in range(0, 1616, 64))
EC_SEC1 = "MHcC" + "AQEEI" + b64(110)
ED25519 = "MC4C" + "AQAwBQYDK2VwBCIEI" + b64(32)
OPENSSH = "b3BlbnNz" + "aC1rZXktdjEAAAAABG5vbm" + b64(200)
AZURE_KEY = b64(64)  # 88 characters, as the portal shows it
BUS_KEY = b64(32)
SAS_SIG = b64(32).replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
BASIC = base64.b64encode(f"deploy:{PW}".encode()).decode()
AZURITE = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/" + "K1SZFPTOtr/KBHBeksoGMGw=="
URL, HEADER, AZURE, SAS, PAIR = (
    "password in url", "authorization header", "azure key", "azure sas signature", "basic auth password")
KEY, ASSIGNMENT = "private key", "password or token assignment"

# (case, code, the rule that must find it; "" for a near-miss that must not be flagged)
CASES = [
    # assignment literals longer than 256 characters
    ("long base62 api key", f'API_KEY = "{LONG_B62}"\n', ASSIGNMENT),
    ("long base64 signing key", f'SIGNING_KEY = "{LONG_B64}"\n', ASSIGNMENT),
    ("long hex secret", f'const secret = "{LONG_HEX}";\n', ASSIGNMENT),
    ("long literal, repeated character", f'SECRET_FILL = "{"A" * 300}"\n', ""),
    ("long literal, repeated pattern", f'token_data = "{"0123456789abcdef" * 20}"\n', ""),
    ("long literal, path of words", 'private_key_dir = "' + "/".join(["keys", "production", "service"] * 20) + '"\n',
     ""),
    ("long literal, url", f'TOKEN_DOCS = "https://docs.internal/{"a-b-c-d/" * 40}"\n', ""),
    ("long literal, sql has spaces", 'SECRET_QUERY = "' + "SELECT id, name FROM users WHERE id = ? " * 10 + '"\n',
     ""),
    ("long literal, png icon", f'token_icon = "iVBORw0KGgoAAAANSUhEUg{b64(300)}"\n', ""),
    ("long literal, data uri", f'secret_badge = "data:image/png;base64,{b64(300)}"\n', ""),
    ("long literal, not assigned to a secret", f'FIXTURE = "{LONG_B64}"\n', ""),
    ("long literal, documented example", 'SessionToken = "' + "AQoDYXdzEPT//////////wEXAMPLEtc" + b64(300) + '"\n',
     ""),  # moto, from AWS's docs
    ("long literal, public key", f'PUBLIC_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A{b64(280)}"\n', ""),
    # private key bodies without the BEGIN line
    ("pkcs8 rsa body", f'const der = "{RSA_PKCS8}";\n', KEY),
    ("pkcs1 rsa body with \\n escapes", f'KEY = "{RSA_PKCS1_LINES}"\n', KEY),
    ("sec1 ec body", f'key := "{EC_SEC1}"\n', KEY),
    ("ed25519 pkcs8 body", f'ED = "{ED25519}"\n', KEY),
    ("openssh key body", f'blob = "{OPENSSH}"\n', KEY),
    ("truncated key in a docstring", '"""A key starts MIIEvQIBADANBgkqhkiG9w0BAQEFAASC... and so on."""\n', ""),
    ("certificate body", f'CA = "MIIDdzCCAl+gAwIBAgIE{b64(400)}"\n', ""),
    # URLs with a password in their userinfo
    ("postgres url", f'DATABASE_URL = "postgres://app:{PW}@db.internal:5432/app"\n', URL),
    ("sqlalchemy url", f'engine = create_engine("postgresql+psycopg2://app:{PW}@10.0.0.5/app")\n', URL),
    ("mysql url", f"$dsn = 'mysql://root:{PW}@mysql.prod/app';\n", URL),
    ("mongodb srv url", f'const uri = "mongodb+srv://admin:{PW}@cluster0.ab1cd.mongodb.net/db";\n', URL),
    ("redis url, no user", f'REDIS = "redis://:{PW}@cache.internal:6379/0"\n', URL),
    ("amqp url", f'broker = "amqp://svc:{PW2}@rabbit/vhost"\n', URL),
    ("git remote with a password", f'REMOTE = "https://deploy:{PW}@git.internal/repo.git"\n', URL),
    ("localhost is no excuse", f'DSN = "postgres://app:{PW}@localhost/app"\n', URL),
    ("url, placeholder password", 'DSN = "postgres://user:password@localhost/db"\n', ""),
    ("url, no password", 'DSN = "postgres://user@localhost/db"\n', ""),
    ("url, env variable", 'DSN = "postgresql://app:${DB_PASSWORD}@db:5432/app"\n', ""),
    ("url, printf", 'dsn = "mysql://root:%s@%s/db" % (pw, host)\n', ""),
    ("url, f-string", 'dsn = f"postgres://{user}:{password}@{host}/db"\n', ""),
    ("url, angle placeholder", 'URI = "mongodb+srv://admin:<password>@cluster0.mongodb.net"\n', ""),
    ("url, masked", 'log.info("redis://:********@cache:6379")\n', ""),
    ("url, default user and password", 'BROKER = "amqp://guest:guest@localhost:5672/"\n', ""),
    ("url, documentation host", f'"""Connect to postgres://alice:{PW}@db.example.com/app"""\n', ""),
    ("url, port and an at sign later", 'URL = "http://host:8080?email=a@b.org"\n', ""),
    ("url, ipv6 host", 'URL = "http://[::1]:8080/a@b"\n', ""),
    ("ssh url", 'REPO = "ssh://git@github.com/org/repo.git"\n', ""),
    ("multi-host url", "MultiHostUrl('https://foo.com:123,foo:bar@bar.com/path')\n", ""),  # pydantic
    # HTTP Authorization header values
    ("bearer header in a curl line", f'CMD = "curl -H \'Authorization: Bearer {TOKEN}\' https://api"\n', HEADER),
    ("basic header in a dict", f'HEADERS = {{"Authorization": "Basic {BASIC}"}}\n', HEADER),
    ("token header in go", f'req.Header.Set("Authorization", "Token {TOKEN}")\n', HEADER),
    ("lower-case token scheme", f"headers = {{authorization: 'token {TOKEN}'}};\n", HEADER),
    ("bearer constant", f'AUTH = "Bearer {TOKEN}"\n', HEADER),
    ("header from a variable", 'headers={"Authorization": f"Bearer {token}"}\n', ""),
    ("header joined with a variable", 'headers = {"Authorization": "Bearer " + token}\n', ""),
    ("header in a js template", 'req.headers["Authorization"] = `Bearer ${token}`;\n', ""),
    ("header placeholder in a docstring", '"""Send Authorization: Bearer <token> with each call."""\n', ""),
    ("header placeholder word", 'H = {"Authorization": "Bearer YOUR_ACCESS_TOKEN_HERE_123"}\n', ""),
    ("basic placeholder user:password", 'H = {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}\n', ""),
    ("basic example from the rfc", '# Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\n', ""),
    ("authorization from a function", "authorization = get_authorization_header(request)\n", ""),
    ("a header name that ends in Authorization", '{"AWS::Redshift::EndpointAuthorization": "e72be424d109da1d"}\n',
     ""),  # cfn-lint
    ("authorization decoded", "authorization = base64.decodebytes(authorization)\n", ""),  # http/server.py
    ("bearer in prose", '"""Bearer tokens expire after an hour; Basic authentication is off."""\n', ""),
    # Azure
    ("azure connection string", 'CONN = "DefaultEndpointsProtocol=https;AccountName=acme;'
     f'AccountKey={AZURE_KEY};EndpointSuffix=core.windows.net"\n', AZURE),
    ("service bus connection string", 'BUS = "Endpoint=sb://acme.servicebus.windows.net/;'
     f'SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={BUS_KEY}"\n', AZURE),
    ("sas url", 'BLOB = "https://acme.blob.core.windows.net/c/b.txt?sv=2022-11-02&se=2030-01-01&sr=b&sp=r'
     f'&sig={SAS_SIG}"\n', SAS),
    ("azurite's published key", 'CONN = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;'
     f'AccountKey={AZURITE};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1"\n', ""),
    ("azure key placeholder", 'CONN = "AccountName=acme;AccountKey=<your-account-key>"\n', ""),
    ("azure key from a variable", 'conn = "AccountName=acme;AccountKey=" + key\n', ""),
    # basic-auth pairs
    ("auth tuple", f'requests.get(url, auth=("admin", "{PW}"))\n', PAIR),
    ("auth tuple, single quotes", f"r = requests.post(url, json=body, auth=('svc', '{PW2}'))\n", PAIR),
    ("HTTPBasicAuth", f'session.auth = HTTPBasicAuth("deploy", "{PW}")\n', PAIR),
    ("go SetBasicAuth", f'req.SetBasicAuth("svc", "{PW}")\n', PAIR),
    ("rust basic_auth", f'client.get(url).basic_auth("svc", Some("{PW}"))\n', PAIR),
    ("elasticsearch basic_auth", f'es = Elasticsearch(hosts, basic_auth=("elastic", "{PW}"))\n', PAIR),
    ("auth tuple, user from a variable", f'auth = (USERNAME, "{PW}")\n', PAIR),
    ("auth tuple from the environment", 'auth=("admin", os.environ["ADMIN_PASSWORD"])\n', ""),
    ("auth tuple of variables", "r = requests.get(url, auth=(user, password))\n", ""),
    ("auth placeholder", 'auth = HTTPBasicAuth("user", "pass")\n', ""),
    ("auth user as password", 'requests.get(url, auth=("admin", "admin"))\n', ""),
    ("auth too short", "requests.get(url, auth=('u', 'p'))\n", ""),
    ("auth empty password", 'auth=("admin", "")\n', ""),
    ("auth f-string", 'auth=("admin", f"{prefix}-{suffix}")\n', ""),
]


@pytest.mark.parametrize(("case", "code", "rule"), CASES, ids=[c[0] for c in CASES])
def test_the_rules_find_each_form_and_leave_near_misses(case, code, rule):
    assert secrets.BUILTIN.content_rule(code.encode(), "x.py") == rule


def test_the_table_is_large_and_balanced():
    found = [rule for _, _, rule in CASES if rule]
    assert len(CASES) >= 40 and len(found) >= 20 and len(CASES) - len(found) >= 20
    assert set(found) == {ASSIGNMENT, KEY, URL, HEADER, AZURE, SAS, PAIR}


HOSTILE = [  # long lines built to make a backtracking expression try every split
    b"://" + b"a:" * 200_000,
    b"postgres://" + b"u" * 100_000 + b":" + b"p" * 200_000 + b"\n",
    b'api_key = "' + b"Ab1" * 200_000,  # a literal that never closes
    b'token = "' + b"Ab1+" * 200_000 + b'"',  # one that closes after 800 kB
    b"Authorization: " * 50_000 + b"Bearer " * 50_000,
    b"Basic " + b"QUFB" * 200_000,
    b'auth=("' + b'a", "' * 100_000,
    b"AccountKey=" * 50_000 + b"A" * 200_000,
    b"MIIEvQIBA" * 50_000,
    b"=" * 300_000 + b'"' * 300_000,
]


@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_long_lines_are_scanned_in_one_pass(data):
    """Each line is hundreds of kB: an expression that backtracks over it would not finish."""
    assert isinstance(secrets.BUILTIN.content_rule(data, "x.py"), str)


def test_a_long_random_literal_is_still_found_inside_a_big_file():
    filler = "".join(f"def f{n}(x):\n    return x + {n}\n" for n in range(5000))
    data = (filler + f'PRIVATE_TOKEN = "{LONG_B64}"\n' + filler).encode()
    assert secrets.BUILTIN.content_rule(data, "x.py") == ASSIGNMENT


# --- end to end: the real indexer, store and CLI -------------------------------------------------

LEAKS = {  # one file of each new kind, each with a function the query below would find
    "db/engine.py": f'URL = "postgres://app:{PW}@db.internal/app"\n\n\n'
                    'def fetch_ledger_rows(db):\n    return db.all()\n',
    "api/client.js": f'const H = {{"Authorization": "Bearer {TOKEN}"}};\n\nfunction fetchLedgerRows(api) {{\n'
                     '  return api.get("/ledger", {headers: H});\n}\n',
    "store/blob.py": f'CONN = "AccountName=acme;AccountKey={AZURE_KEY}"\n\n\ndef fetch_ledger_rows(c):\n    return c\n',
    "http/basic.py": f'def fetch_ledger_rows(s):\n    return s.get("/l", auth=("svc", "{PW}"))\n',
    "keys/long.py": f'SIGNING_KEY = "{LONG_B64}"\n\n\ndef fetch_ledger_rows(k):\n    return k\n',
}
CLEAN = {
    "db/docs.py": '"""Set DATABASE_URL to postgres://user:password@localhost/db."""\n\n\n'
                  'def fetch_ledger_rows(db, auth=("admin", os.environ["PW"])):\n    return db.all(auth)\n',
}
RULES = {"db/engine.py": URL, "api/client.js": HEADER, "store/blob.py": AZURE, "http/basic.py": PAIR,
         "keys/long.py": ASSIGNMENT}


@pytest.fixture(scope="module")
def leaky(tmp_path_factory, tiny_model):
    """The sample repository plus LEAKS and CLEAN, indexed once: (root, settings, report)."""
    root = tmp_path_factory.mktemp("forms") / "repo"
    shutil.copytree(SAMPLE_REPO, root, ignore=shutil.ignore_patterns(".codesearch"))
    for rel, text in (LEAKS | CLEAN).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    settings = Settings(model=str(tiny_model), threads=1)
    return root, settings, build_index(root, settings)


def test_each_form_keeps_its_file_out_of_the_index(leaky):
    root, settings, report = leaky
    assert {path: report.secret_rules.get(path) for path in LEAKS} == RULES
    assert {(path, "secret") for path in LEAKS} <= set(report.skipped_paths)
    store = Store.open(settings.index_path(root))
    stored = store.chunks.to_arrow().drop_columns(["vector"]).to_pylist()
    assert not set(LEAKS) & {row["path"] for row in stored} and "db/docs.py" in store.file_states()
    text = "\n".join(str(value) for row in stored for value in row.values())
    for secret in (PW, TOKEN, AZURE_KEY, LONG_B64):
        assert secret not in text


def test_query_finds_only_the_clean_file(leaky, run):
    root, _, _ = leaky
    code, out, err = run("query", "fetch ledger rows", "--root", str(root), "--mode", "lexical", "-k", "50", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    paths = {hit["path"] for hit in hits if hit["type"] == "hit"}
    assert code == 0 and "db/docs.py" in paths and not paths & set(LEAKS)
    assert not any(secret in out for secret in (PW, TOKEN, AZURE_KEY, LONG_B64))
