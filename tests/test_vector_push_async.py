"""get_async_session()'s COMMIT pushes to Chroma without blocking the event loop.

The store's calls run on a worker thread, the database steps on the async connection,
and the post-save hooks run after the push, as with get_session(). (The behaviour of the
push itself, both ways, is in tests/test_vector_push.py.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dbcore
from dbcore import migrate
from dbcore.config import ChromaSettings
from dbcore.DB_Memories import EMBEDDING_DIMS, Memory, MemoryEmbedding
from dbcore.events import remove_hooks
from dbcore.testing import add_memory_parents
from dbcore.vectorstores import get_vector_store, register_vector_store, unregister_vector_store
from dbcore.vectorstores.base import PreparedRecord
from dbcore.vectorstores.chroma import create_store as create_chroma_store
from tests.api_modes import LoopRunner
from tests.wrapped_store import WrappedStore


class ThreadRecordingStore(WrappedStore):
    """The real Chroma store, noting the thread each upsert runs on."""

    threads: list[int] = []

    def _upsert(self, batch: Sequence[PreparedRecord]) -> None:
        ThreadRecordingStore.threads.append(threading.get_ident())
        super()._upsert(batch)


@pytest.fixture
def chroma_settings(settings: dbcore.Settings, tmp_path: Path) -> Iterator[dbcore.Settings]:
    configured = settings.replace(vector_backend="chroma", chroma=ChromaSettings(path=str(tmp_path / "chroma")))
    register_vector_store("chroma", lambda s, **kw: ThreadRecordingStore(create_chroma_store(s, **kw)), replace=True)
    ThreadRecordingStore.threads = []
    try:
        migrate.upgrade(configured, "head")
        yield configured
    finally:
        unregister_vector_store("chroma")


def test_async_commit_pushes_off_the_loop_then_runs_hooks(aio: LoopRunner, chroma_settings: dbcore.Settings) -> None:
    with dbcore.get_session(chroma_settings) as session:
        parents = add_memory_parents(session, name="async-push")
    vector = np.random.default_rng(7).normal(size=EMBEDDING_DIMS).astype(np.float32)
    seen_by_hook: list[int] = []

    def hook(obj: Any, action: str) -> None:
        # Runs after the push: the memory is already in the store.
        with get_vector_store(chroma_settings) as reader:
            seen_by_hook.append(len(reader.get([obj.id])))

    async def unit() -> tuple[Any, int]:
        async with dbcore.get_async_session(chroma_settings) as session:
            memory = Memory(
                kind=dbcore.MemoryKind.MESSAGE,
                content={"text": "async"},
                agent_id=parents["agent_id"],
                entity_id=parents["entity_id"],
                room_id=parents["room_ids"][0],
            )
            session.add(memory)
            await session.flush()
            session.add(MemoryEmbedding(memory_id=memory.id, embedding=vector))
        return memory.id, threading.get_ident()

    dbcore.on_saved(Memory)(hook)
    try:
        memory_id, loop_thread = aio.run(unit())
    finally:
        remove_hooks(hook)
    assert ThreadRecordingStore.threads and loop_thread not in ThreadRecordingStore.threads
    assert seen_by_hook == [1]
    with get_vector_store(chroma_settings) as reader:
        (match,) = reader.query(vector, k=1)
    assert match.id == memory_id
