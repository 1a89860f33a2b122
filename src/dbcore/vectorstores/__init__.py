"""Pluggable vector stores: one interface, backends chosen by configuration.

``get_vector_store()`` builds the backend named by ``Settings.vector_backend``
(``integrated``, ``chroma``, ``pinecone``) with ``Settings.vector_dims``. Third-party
backends register with :func:`register_vector_store` or through the entry-point
group ``dbcore.vector_stores`` (the entry point names a factory, see below).

A factory is called as ``factory(settings, **kwargs)`` and returns a
:class:`VectorStore`. Built-in backends live in ``dbcore.vectorstores.<name>`` and
expose ``create_store(settings, **kwargs)``; they are imported only when chosen, so
importing dbcore loads neither chromadb nor pinecone.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from dbcore.config import Settings
from dbcore.errors import ConfigurationError
from dbcore.vectorstores.base import Match, Record, StoreHealth, VectorStore
from dbcore.vectorstores.filters import And, F, Filter, Or, UnsupportedFilter

__all__ = [
    "VectorStore",
    "Record",
    "Match",
    "StoreHealth",
    "Filter",
    "F",
    "And",
    "Or",
    "UnsupportedFilter",
    "VectorStoreFactory",
    "ENTRY_POINT_GROUP",
    "register_vector_store",
    "unregister_vector_store",
    "available_vector_stores",
    "get_vector_store",
]

ENTRY_POINT_GROUP = "dbcore.vector_stores"
VectorStoreFactory = Callable[..., VectorStore]

# name -> module holding ``create_store``; imported on first use only.
_BUILTIN_MODULES = {
    "integrated": "dbcore.vectorstores.integrated",
    "chroma": "dbcore.vectorstores.chroma",
    "pinecone": "dbcore.vectorstores.pinecone",
}
_EXTRAS = {"chroma": "chroma", "pinecone": "pinecone"}


class _Registry:
    """Factories registered in this process, plus lazily discovered entry points."""

    def __init__(self) -> None:
        self._factories: dict[str, VectorStoreFactory] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: VectorStoreFactory, *, replace: bool) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a vector store name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise ConfigurationError(f"the factory for vector store {name!r} is not callable")
        with self._lock:
            if name in self._factories and not replace:
                raise ConfigurationError(f"vector store {name!r} is already registered; pass replace=True to override")
            self._factories[name] = factory

    def unregister(self, name: str) -> None:
        with self._lock:
            self._factories.pop(name, None)

    def names(self) -> list[str]:
        found = set(self._factories) | set(_BUILTIN_MODULES)
        found |= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
        return sorted(found)

    def resolve(self, name: str) -> VectorStoreFactory:
        with self._lock:
            factory = self._factories.get(name)
        if factory is not None:
            return factory
        if name in _BUILTIN_MODULES:
            return _builtin_factory(name)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                try:
                    loaded = ep.load()
                except Exception as exc:
                    raise ConfigurationError(
                        f"vector store {name!r} (entry point {ep.value}) failed to load: {type(exc).__name__}: {exc}"
                    ) from exc
                if not callable(loaded):
                    raise ConfigurationError(f"entry point {ep.value} for vector store {name!r} is not callable")
                return loaded  # type: ignore[no-any-return]
        raise ConfigurationError(
            f"no vector store named {name!r}; known: {', '.join(self.names())}. "
            f"Register one with register_vector_store() or the {ENTRY_POINT_GROUP!r} entry-point group"
        )


def _builtin_factory(name: str) -> VectorStoreFactory:
    module_name = _BUILTIN_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigurationError(
                f"the {name!r} vector store is not available in this dbcore build ({module_name} is missing); "
                "choose another DBCORE_VECTOR_BACKEND"
            ) from None
        extra = _EXTRAS.get(name)
        hint = f"; pip install 'dbcore[{extra}]'" if extra else ""
        raise ConfigurationError(f"the {name!r} vector store needs {exc.name}, which is not installed{hint}") from None
    factory = getattr(module, "create_store", None)
    if not callable(factory):
        raise ConfigurationError(f"{module_name} has no create_store(settings, **kwargs) function")
    return factory  # type: ignore[no-any-return]


_registry = _Registry()


def register_vector_store(name: str, factory: VectorStoreFactory, *, replace: bool = False) -> None:
    """Register ``factory(settings, **kwargs) -> VectorStore`` under ``name``.

    A registered name wins over a built-in or entry-point backend of the same name.
    """
    _registry.register(name, factory, replace=replace)


def unregister_vector_store(name: str) -> None:
    """Forget a factory registered with :func:`register_vector_store` (built-ins stay)."""
    _registry.unregister(name)


def available_vector_stores() -> list[str]:
    """Names of the built-in, registered and entry-point backends."""
    return _registry.names()


def get_vector_store(settings: Settings | None = None, *, backend: str | None = None, **kwargs: Any) -> VectorStore:
    """Build the vector store chosen by ``settings`` (default ``Settings.from_env()``).

    ``backend`` overrides ``settings.vector_backend`` (needed for third-party names,
    which Settings does not know). ``kwargs`` go to the backend factory.
    """
    settings = settings or Settings.from_env()
    name = backend or settings.vector_backend
    store = _registry.resolve(name)(settings, **kwargs)
    if not isinstance(store, VectorStore):
        raise ConfigurationError(
            f"the factory for vector store {name!r} returned {type(store).__name__}, not a VectorStore"
        )
    return store
