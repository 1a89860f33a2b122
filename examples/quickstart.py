"""dbcore end to end: an agent, a person it knows and a room; two memories with embeddings; a vector search.

Run it after `dbcore init`, with the same DATABASE_URL. The embeddings are made up
(random, from a fixed seed) at the configured dimension: use your embedding model's.
"""

import numpy as np

from dbcore import Agent, Entity, F, Memory, Room, RoomKind, Settings, get_session, get_vector_store
from dbcore.memories import add_memories

settings = Settings.from_env()  # DATABASE_URL, DBCORE_VECTOR_DIMS (384), DBCORE_VECTOR_BACKEND, ...
embeddings = np.random.default_rng(seed=16).normal(size=(2, settings.vector_dims))

with get_session(settings) as session:  # commits on success, rolls back on any exception
    agent = Agent(name="Ada")
    person = Entity(agent=agent, names=["Grace"])
    room = Room(name="general", kind=RoomKind.GROUP)
    session.add_all([agent, person, room])
    session.flush()  # gives the rows their ids
    about = {"agent_id": agent.id, "entity_id": person.id, "room_id": room.id, "kind": "message"}
    add_memories(  # the rows and their embeddings, in this transaction
        session,
        [{**about, "content": {"text": "Grace takes her tea black"}},
         {**about, "content": {"text": "Grace is flying to Lisbon on Friday"}}],
        embeddings,
    )

# DBCORE_VECTOR_BACKEND: integrated (the default: the search runs in the database), chroma or pinecone.
store = get_vector_store(settings)
matches = store.query(embeddings[1], k=5, filter=F("room_id") == room.id, min_score=0.3)

with get_session(settings, read_only=True) as session:
    for match in matches:
        memory = session.get(Memory, match.id)
        print(f"{memory.content['text']} (score {match.score:.2f})")
