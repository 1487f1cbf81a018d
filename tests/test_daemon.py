"""The daemon gives way to the editor: its indexing thread runs at a lower priority with its own
capped ONNX Runtime session, and pauses between batches while a query is answered."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

import pytest

from codesearch.daemon import YIELD_MAX_S, LiveIndex


def niceness(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19 of stat(5)


@pytest.fixture
def live(repo, settings):
    live = LiveIndex(repo, dataclasses.replace(settings, daemon_nice=7, daemon_threads=2), watch=False)
    live.start()
    live.sync().result(timeout=120)
    yield live
    live.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread only on Linux")
def test_the_indexing_thread_runs_lower_and_query_threads_do_not(live):
    base = niceness(threading.get_native_id())
    worker = next(t for t in threading.enumerate() if t.name.startswith("codesearch index"))
    assert niceness(worker.native_id) == min(19, base + 7)
    lowered = [int(tid) for tid in os.listdir("/proc/self/task") if niceness(int(tid)) > base]
    # The worker and the threads it started itself: its own ONNX Runtime pool (2 threads: the worker
    # and one more), maybe a few LanceDB blocking-I/O helpers; not the query session's pool or LanceDB's runtime.
    assert worker.native_id in lowered
    assert len(lowered) < len(os.listdir("/proc/self/task")) / 2
    assert live.index.search("parse json", 3, mode="semantic")  # queries still answer


def test_indexing_waits_for_a_query_between_batches_but_not_forever(live):
    with live.querying():
        started = time.monotonic()
        live._yield_to_queries()
        waited = time.monotonic() - started
    assert YIELD_MAX_S * 0.9 <= waited < YIELD_MAX_S + 0.5
    released = threading.Event()

    def answer_query():
        with live.querying():
            released.wait()
            time.sleep(0.1)

    thread = threading.Thread(target=answer_query)
    thread.start()
    released.set()
    started = time.monotonic()
    live._yield_to_queries()
    thread.join()
    assert time.monotonic() - started < YIELD_MAX_S
    started = time.monotonic()
    live._yield_to_queries()  # no query: no wait
    assert time.monotonic() - started < 0.05


def test_the_index_session_is_capped_and_yields(live):
    encoder = live._index_encoder
    assert encoder is not None and encoder is not live._encoder
    assert encoder.before_batch == live._yield_to_queries
    assert encoder.batch_tokens <= 4096
