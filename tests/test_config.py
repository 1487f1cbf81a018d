"""Settings resolution: defaults < user config < repo config < environment < flags."""

import pytest

from codesearch.config import Settings, load_settings
from codesearch.errors import CodesearchError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("MODEL", "THREADS", "DEVICE", "LANGUAGES", "IGNORE"):
        monkeypatch.delenv(f"CODESEARCH_{name}", raising=False)


def test_defaults(tmp_path):
    assert load_settings(tmp_path) == Settings()


def test_layers_in_order(tmp_path, monkeypatch):
    user = tmp_path / "xdg" / "codesearch"
    user.mkdir(parents=True)
    (user / "config.toml").write_text('threads = 1\ndevice = "cpu"\nmax_file_bytes = 10\n')
    (tmp_path / "pyproject.toml").write_text('[tool.codesearch]\nthreads = 2\nlanguages = ["python"]\n')
    monkeypatch.setenv("CODESEARCH_THREADS", "3")
    settings = load_settings(tmp_path, {"device": "auto", "model": None})
    assert settings.threads == 3  # environment beats the repo and the user
    assert settings.languages == ("python",)  # repo
    assert settings.max_file_bytes == 10  # user
    assert settings.device == "auto"  # flag beats user; a flag left as None does not count


def test_codesearch_toml_wins_over_pyproject_and_resolves_model_path(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.codesearch]\nthreads = 2\n')
    (tmp_path / ".codesearch.toml").write_text('model = "models/mine"\nignore = ["gen/"]\n')
    settings = load_settings(tmp_path)
    assert settings.threads == 0
    assert settings.model == str((tmp_path / "models" / "mine").resolve())
    assert settings.ignore == ("gen/",)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("modle = 'x'", "unknown setting 'modle' (valid: model, languages"),
        ("threads = 'many'", "'threads' must be an integer"),
        ("device = 'tpu'", "'device' must be one of auto, cpu, cuda"),
        ("languages = 'python'\nignore = 3", "'ignore' must be a list of strings"),
        ("threads = [", "cannot read config"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, toml, message):
    (tmp_path / ".codesearch.toml").write_text(toml)
    with pytest.raises(CodesearchError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_settings(tmp_path)


def test_environment_lists_are_comma_separated(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESEARCH_LANGUAGES", "python, go")
    assert load_settings(tmp_path).languages == ("python", "go")
