"""One real `codesearch lsp` over stdio, shared by the LSP tests (tests/test_lsp_*.py).

The server is started once per session on a copy of the sample repository with the tiny model (the
lancedb import alone takes seconds, so a server per test would make the suite slow). Tests that
change the repository put it back, and each works on names no other test asserts on.
The copy holds one near-duplicate on purpose: py/again.py repeats retry_with_backoff.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.uris import from_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

SAMPLE_REPO = Path(__file__).parent / "fixtures" / "sample_repo"
DEBOUNCE_MS = 50

CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(
        code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True),
        did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
        symbol=types.WorkspaceSymbolClientCapabilities(),
    ),
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
        code_lens=types.CodeLensClientCapabilities(),
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True),
    ),
)


@dataclass
class Session:
    """The client of the shared server, and what happened while it started."""

    client: LanguageClient
    repo: Path
    initialize_result: types.InitializeResult
    early_answer: Any  # a codesearch/search sent before the first index existed: its result or error
    early_seconds: float
    lens_refreshes: list  # workspace/codeLens/refresh requests received

    def uri(self, rel: str) -> str:
        return from_fs_path(str(self.repo / rel))

    async def request(self, method: str, params: Any = None) -> Any:
        return await asyncio.wait_for(self.client.protocol.send_request_async(method, params), timeout=30)

    async def search(self, query: str, **options: Any) -> list:
        return list((await self.request("codesearch/search", {"query": query, **options})).hits)

    async def command(self, command: str, *arguments: Any) -> Any:
        params = types.ExecuteCommandParams(command=command, arguments=list(arguments))
        return await asyncio.wait_for(self.client.workspace_execute_command_async(params), timeout=60)

    async def until(self, check, timeout: float = 10.0, every: float = 0.02) -> float:
        """Poll `check` (an async function) until it returns true; the seconds it took."""
        started = time.perf_counter()
        while not await check():
            if time.perf_counter() - started > timeout:
                raise AssertionError(f"still false after {timeout}s")
            await asyncio.sleep(every)
        return time.perf_counter() - started

    def progress_ends(self) -> int:
        return sum(isinstance(r, types.WorkDoneProgressEnd) for reports in self.client.progress_reports.values() for r in reports)


def write_near_duplicate(repo: Path) -> None:
    retry = (repo / "py" / "retry.py").read_text()
    (repo / "py" / "again.py").write_text(
        "import random\nimport time\n\n\n" + retry[retry.index("def retry_with_backoff") : retry.index("\n\n\nclass")] + "\n"
    )


@pytest.fixture(scope="session")
def lsp_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("lsp") / "repo"
    shutil.copytree(SAMPLE_REPO, repo, ignore=shutil.ignore_patterns(".codesearch"))
    write_near_duplicate(repo)
    return repo


@pytest_lsp.fixture(
    scope="session",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "codesearch", "lsp"]),
)
async def lsp_server(client: LanguageClient):
    yield
    await client.shutdown_session()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def lsp(lsp_server: LanguageClient, lsp_repo: Path, tiny_model: Path) -> Session:
    """The shared server, initialized on the repository copy and done with its first index."""
    client = lsp_server
    refreshes = []
    client.feature(types.WORKSPACE_CODE_LENS_REFRESH)(lambda ls, params: refreshes.append(params))
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            root_uri=from_fs_path(str(lsp_repo)),
            workspace_folders=[types.WorkspaceFolder(from_fs_path(str(lsp_repo)), "repo")],
            initialization_options={
                "model": str(tiny_model), "debounceMs": DEBOUNCE_MS, "duplicateDiagnostics": True, "colour": "blue",
                "similarityThreshold": 0.999,  # the tiny model is random: everything is somewhat alike
            },
        )
    )
    session = Session(client, lsp_repo, result, None, 0.0, refreshes)
    started = time.perf_counter()
    try:
        session.early_answer = await session.request("codesearch/search", {"query": "parse json"})
    except JsonRpcException as exc:
        session.early_answer = exc
    session.early_seconds = time.perf_counter() - started

    async def indexed() -> bool:
        folders = (await session.request("codesearch/status")).folders
        return session.progress_ends() > 0 and folders[0].indexed and folders[0].state == "idle"

    await session.until(indexed, timeout=90, every=0.1)
    return session
