"""The agent runtime's API: :class:`DatabaseAdapter` and :class:`AsyncDatabaseAdapter`.

Agent code calls methods (``create_memory``, ``search_memories``, ``get_cache``...)
instead of writing SQLAlchemy. Every method is one function of a sync session
(the domain modules beside this one), run by the sync adapter in ``get_session`` and
by the async adapter through ``AsyncSession.run_sync``; see docs/adapter.md.
"""

from __future__ import annotations

from dbcore.adapter.context import AdapterOptions
from dbcore.adapter.facade import AsyncDatabaseAdapter, DatabaseAdapter
from dbcore.adapter.lifecycle import InitReport

__all__ = ["DatabaseAdapter", "AsyncDatabaseAdapter", "AdapterOptions", "InitReport"]
