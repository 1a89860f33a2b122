"""What a downstream runtime's type checker sees of the adapters (checked by mypy in CI).

Each assignment states the type mypy must infer: the sync class returns values, the
async class coroutines, from the same operation functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from typing import Any

import dbcore
from dbcore.adapter import AsyncDatabaseAdapter, DatabaseAdapter


def sync_calls(adapter: DatabaseAdapter, agent_id: uuid.UUID) -> None:
    view: DatabaseAdapter = adapter.for_agent(agent_id)
    checked: None = view.ensure_embedding_dimension(384)
    connected: bool = adapter.is_connected()
    info: dbcore.ConnectionInfo = adapter.connection_info()
    del checked, connected, info


async def async_calls(adapter: AsyncDatabaseAdapter, agent_id: uuid.UUID) -> None:
    view: AsyncDatabaseAdapter = adapter.for_agent(agent_id)
    pending: Coroutine[Any, Any, None] = view.ensure_embedding_dimension(384)
    await pending
    connected: bool = await adapter.is_connected()
    async with adapter.transaction() as joined:
        same: AsyncDatabaseAdapter = joined
        del same
    del connected
