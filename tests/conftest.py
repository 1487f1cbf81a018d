"""Shared fixtures: a tiny real model built with the trainer's own export, and a sample repository."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codesearch.config import Settings

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"


def pytest_addoption(parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the long trials (marked slow)")


def pytest_collection_modifyitems(config, items) -> None:
    """Long fault trials run only with --slow (or CODESEARCH_SLOW=1); CI runs their short variants."""
    if config.getoption("--slow") or os.environ.get("CODESEARCH_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long trial: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight model folder, exported by trainer.export like a real one."""
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-a", seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """A second tiny model with another id, for model-change tests."""
    from trainer.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-b", seed=1)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A fresh copy of the multi-language sample repository."""
    target = tmp_path / "repo"
    shutil.copytree(SAMPLE_REPO, target, ignore=shutil.ignore_patterns(".codesearch"))
    return target


@pytest.fixture
def settings(tiny_model) -> Settings:
    return Settings(model=str(tiny_model), threads=1)


@pytest.fixture
def run(capsys, monkeypatch, tiny_model):
    """Run the CLI in-process with the tiny model: (exit code, stdout, stderr)."""
    from codesearch.cli import main

    monkeypatch.setenv("CODESEARCH_MODEL", str(tiny_model))
    monkeypatch.setenv("CODESEARCH_THREADS", "1")

    def run(*argv):
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# The shared language server of the LSP tests (tests/test_lsp_*.py); see tests/lsp_fixtures.py.
from lsp_fixtures import lsp, lsp_repo, lsp_server  # noqa: E402, F401
