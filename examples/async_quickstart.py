"""dbcore from asyncio: rows and an embedding written, then searched, without blocking the event loop.

Run it after `dbcore init`, with the same DATABASE_URL: dbcore picks the async driver
from it (aiosqlite, psycopg, asyncmy, aioodbc). Install with the asyncio extra.
"""

import asyncio

import numpy as np

from dbcore import (
    Agent,
    Entity,
    F,
    Memory,
    Room,
    RoomKind,
    Settings,
    dispose_async_engines,
    get_async_session,
    get_vector_store,
)
from dbcore.memories import add_memories

settings = Settings.from_env()
embedding = np.random.default_rng(seed=11).normal(size=settings.vector_dims)


async def main() -> None:
    async with get_async_session(settings) as session:  # commits on success; rolls back on an exception or cancel
        agent = Agent(name="Ada")
        person = Entity(agent=agent, names=["Grace"])
        room = Room(name="kitchen", kind=RoomKind.GROUP)
        session.add_all([agent, person, room])
        await session.flush()
        about = {"agent_id": agent.id, "entity_id": person.id, "room_id": room.id, "kind": "message"}
        # dbcore's sync helpers run on the async session's connection through run_sync.
        await session.run_sync(add_memories, [{**about, "content": {"text": "Grace bakes on Sundays"}}], [embedding])

    store = get_vector_store(settings)
    matches = await store.aquery(embedding, k=5, filter=F("room_id") == room.id, min_score=0.3)

    async with get_async_session(settings, read_only=True) as session:
        for match in matches:
            memory = await session.get(Memory, match.id)
            print(f"{memory.content['text']} (score {match.score:.2f})")
    await store.aclose()
    await dispose_async_engines()  # before the event loop ends


asyncio.run(main())
