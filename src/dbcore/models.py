"""Every dbcore model, imported in dependency order so the mappers can be configured."""

from dbcore.DB_Agents import *  # noqa: F403
from dbcore.DB_Agents import __all__ as _agents
from dbcore.DB_Auth import *  # noqa: F403
from dbcore.DB_Auth import __all__ as _auth
from dbcore.DB_Entities import *  # noqa: F403
from dbcore.DB_Entities import __all__ as _entities
from dbcore.DB_Memories import *  # noqa: F403
from dbcore.DB_Memories import __all__ as _memories

__all__ = [*_auth, *_agents, *_entities, *_memories]
