"""Tests for otel_aspects.labels across tasks and threads.

Decided semantics (docs/DESIGN.md, "Aspects"): a child task or worker thread
started inside a timed scope copies the context, so its set_label targets the
enclosing scope (it runs on the scope's behalf); after the scope has ended such
calls are ignored; a child's own timed block is its own scope.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from otel_aspects import current_labels, set_label, set_success, timed
from tests._support import Recorder


class TestChildTasks:
    def test_asyncio_gather_children_label_the_enclosing_block(self) -> None:
        """Coroutines gathered inside a block set labels on that block."""
        rec = Recorder()

        async def child(i: int) -> None:
            await asyncio.sleep(0)
            set_label(f"child{i}", i)

        async def main() -> None:
            async with timed(record_func=rec):
                await asyncio.gather(child(1), child(2))

        asyncio.run(main())
        assert rec.labels == [{"child1": 1, "child2": 2, "status": "success"}]

    def test_asyncio_straggler_task_after_exit_is_ignored(self) -> None:
        """A task that outlives the block cannot change the recorded measurement or fail."""
        rec = Recorder()
        done = asyncio.Event

        async def main() -> None:
            release = done()

            async def straggler() -> None:
                await release.wait()
                set_label("late", True)
                set_success(False)

            async with timed(record_func=rec):
                task = asyncio.create_task(straggler())
                set_label("early", True)
            release.set()
            await task

        asyncio.run(main())
        assert rec.labels == [{"early": True, "status": "success"}]

    @pytest.mark.anyio
    async def test_task_group_children_label_the_enclosing_block(self) -> None:
        """anyio task-group children (both backends) target the enclosing block."""
        rec = Recorder()

        async def child(i: int) -> None:
            await anyio.sleep(0)
            set_label(f"child{i}", i)

        async with timed(record_func=rec), anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(child, i)
        assert rec.labels == [{"child0": 0, "child1": 1, "child2": 2, "status": "success"}]

    @pytest.mark.anyio
    async def test_child_with_own_block_keeps_parent_untouched(self) -> None:
        """A child opening its own timed block labels only that block."""
        parent, inner = Recorder(), Recorder()

        async def child() -> None:
            async with timed(record_func=inner):
                set_label("where", "child")
                await anyio.sleep(0)

        async with timed(record_func=parent), anyio.create_task_group() as tg:
            tg.start_soon(child)
            set_label("where", "parent")
        assert parent.labels == [{"where": "parent", "status": "success"}]
        assert inner.labels == [{"where": "child", "status": "success"}]

    @pytest.mark.anyio
    async def test_worker_thread_via_to_thread_targets_block(self) -> None:
        """anyio.to_thread.run_sync copies the context: the worker labels the block."""
        rec = Recorder()
        async with timed(record_func=rec):
            await anyio.to_thread.run_sync(set_label, "from_thread", True)
        assert rec.labels == [{"from_thread": True, "status": "success"}]


class TestIsolation:
    @pytest.mark.anyio
    async def test_concurrent_tasks_do_not_leak_labels(self) -> None:
        """Each concurrently running task's block gets only its own labels."""
        rec = Recorder()
        t = timed(record_func=rec)

        async def worker(i: int) -> None:
            async with t:
                set_label("id", i)
                await anyio.sleep(0.001 * (5 - i))
                set_label("again", i)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(worker, i)
        assert sorted(rec.labels, key=lambda labels: labels["id"]) == [
            {"id": i, "again": i, "status": "success"} for i in range(5)
        ]
        assert current_labels() is None

    def test_plain_threads_start_without_a_scope(self) -> None:
        """A threading.Thread starts with an empty context: it sees no scope of its creator."""
        rec = Recorder()
        seen: list[object] = []

        def in_thread() -> None:
            seen.append(current_labels())
            set_label("lost", True)

        with timed(record_func=rec):
            th = threading.Thread(target=in_thread)
            th.start()
            th.join()
        assert seen == [None]
        assert rec.labels == [{"status": "success"}]

    def test_threads_with_their_own_blocks_do_not_leak(self) -> None:
        """One timed object used from many threads at once keeps each thread's labels apart."""
        rec = Recorder()
        t = timed(record_func=rec)
        barrier = threading.Barrier(8)

        def work(i: int) -> None:
            with t:
                set_label("id", i)
                barrier.wait()
                set_label("after", i)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        assert sorted(rec.labels, key=lambda labels: labels["id"]) == [
            {"id": i, "after": i, "status": "success"} for i in range(8)
        ]
