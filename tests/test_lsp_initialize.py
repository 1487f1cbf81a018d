"""initialize: capabilities, the first index built in the background with a progress bar, options."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_capabilities_name_every_feature(lsp):
    caps = lsp.initialize_result.capabilities
    assert caps.workspace_symbol_provider
    assert caps.code_lens_provider is not None
    assert set(caps.execute_command_provider.commands) == {"codesearch.search", "codesearch.similar", "codesearch.reindex"}
    assert caps.text_document_sync.save is not None


async def test_first_build_reports_progress_from_begin_to_end(lsp):
    (reports,) = [r for r in lsp.client.progress_reports.values() if r and "indexing" in getattr(r[0], "title", "")][:1]
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].title == "codesearch: indexing repo"
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    percentages = [r.percentage for r in reports[1:-1] if isinstance(r, types.WorkDoneProgressReport)]
    assert percentages == sorted(percentages) and all(0 <= p <= 100 for p in percentages)


async def test_a_query_before_the_first_index_is_answered_at_once(lsp):
    answer = lsp.early_answer
    assert lsp.early_seconds < 5
    if isinstance(answer, Exception):  # the usual case: a clear error, not a hang
        assert answer.code == -32803 and "building" in str(answer)
    else:  # the first walk was quicker than the request
        assert answer.hits[0].name == "parse_json"


async def test_status_after_the_first_build(lsp):
    (folder,) = (await lsp.request("codesearch/status")).folders
    assert folder.root == str(lsp.repo.resolve())
    assert folder.indexed and folder.complete and folder.files == 13 and folder.chunks > 20
    assert folder.error == ""


async def test_unknown_options_are_logged_not_fatal(lsp):
    messages = [m.message for m in lsp.client.log_messages]
    assert any("unknown codesearch setting 'colour'" in m and "similarityThreshold" in m for m in messages), messages


async def test_tcp_listens_on_localhost_only(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = tmp_path / "run"  # where the token file goes (tests/test_lsp_transport.py checks it)
    runtime.mkdir(mode=0o700)
    server = subprocess.Popen([sys.executable, "-m", "codesearch", "lsp", "--tcp", "--port", str(port)],
                              env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not listen"
                await asyncio.sleep(0.1)
        listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
        local = {addr for _, addr, _, state, *rest in listening if state == "0A" and addr.endswith(f":{port:04X}")}
        assert local == {f"0100007F:{port:04X}"}  # 127.0.0.1, not 0.0.0.0
    finally:
        server.terminate()
        server.wait(10)
