"""An agent runtime's everyday calls through dbcore's adapter: no SQLAlchemy in sight.

Run it after `dbcore init`, with the same DATABASE_URL (the SQLite default works).
"""

import numpy as np

import dbcore

adapter = dbcore.DatabaseAdapter()  # the environment's database; adapter.init() would migrate it
agent = adapter.create_agent("Ada", settings={"model": "small"})
ada = adapter.for_agent(agent.id)  # every call below is confined to Ada's rows

[grace] = ada.create_entities([{"names": ["Grace"]}])
room = ada.create_room(kind="dm", name="kitchen", participants=[grace])

embedding = np.random.default_rng(seed=11).normal(size=adapter.settings.vector_dims)
said = {"entity_id": grace, "room_id": room.id, "content": {"text": "Grace bakes on Sundays"}}
first = ada.create_memory(**said, embedding=embedding, unique=True)
again = ada.create_memory(**said, embedding=embedding, unique=True)  # the same words: a duplicate
print(f"unique: {first.is_unique}, then {again.is_unique}")

for match in ada.search_memories(embedding, k=5, room_id=room.id, unique_only=True):
    print(f"{match.memory.content['text']} (score {match.score:.2f})")

ada.set_cache("greeting", {"text": "Hi Grace"}, ttl=3600)
ada.log(type="action", body={"did": "greeted"}, room_id=room.id)
print(ada.get_cache("greeting"), len(ada.get_logs(room_id=room.id).items), "log entry")
adapter.delete_agent(agent.id)  # and everything that belongs to Ada
adapter.close()
