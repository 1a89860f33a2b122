"""Plural and singular forms of table and relationship names, on inflect.

inflect's ``plural_noun`` pluralizes blindly (``"users"`` becomes ``"userss"``)
and ``singular_noun`` guesses at words that merely end in ``s`` (``"bus"``
becomes ``"bu"``). The functions here first decide whether a word is already
plural, so both are safe to call on either form. snake_case names inflect their
last word only: ``activity_types`` <-> ``activity_type``.

Words in :data:`_RECORDED` are answered from that table; inflect is imported on
the first word outside it. Importing inflect 7 takes about two seconds (it
instruments its functions with typeguard), and dbcore's own models name their
references at import time, so the table keeps inflect out of ``import dbcore``.
tests/test_naming.py checks every entry against inflect's own answer.

Known limits of the heuristic: a few Latin/Greek plurals that inflect does not
round-trip (``axes``, ``bases``) and regular plurals of words ending in a vowel
plus ``s`` that inflect also reads as singular (``menus``) may be misread.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import inflect

__all__ = ["pluralize", "singularize", "is_plural"]

# singular -> plural of the last words of dbcore's own table names (the words
# refs.py asks for while ``import dbcore`` runs), then the pairs tests pin.
_RECORDED: dict[str, str] = {
    "activity": "activities",
    "agent": "agents",
    "component": "components",
    "embedding": "embeddings",
    "entity": "entities",
    "entry": "entries",
    "grant": "grants",
    "key": "keys",
    "memory": "memories",
    "method": "methods",
    "participant": "participants",
    "relationship": "relationships",
    "room": "rooms",
    "task": "tasks",
    "type": "types",
    "user": "users",
    "world": "worlds",
    # tests/test_naming.py
    "address": "addresses",
    "analysis": "analyses",
    "bus": "buses",
    "child": "children",
    "note": "notes",
    "person": "people",
    "status": "statuses",
}
_SINGULAR_OF = {plural: singular for singular, plural in _RECORDED.items()}


@cache
def _engine() -> inflect.engine:
    # Imported here, not at module level, to keep inflect (~2 s) off `import dbcore`.
    import inflect

    return inflect.engine()


def _inflect_plural(word: str) -> str:
    return _engine().plural_noun(word)


def _inflect_analyse(word: str) -> tuple[bool, str]:
    """inflect's reading of one word: ``(is_plural, singular_form)``."""
    engine = _engine()
    singular = engine.singular_noun(word)
    if not singular:
        return False, word
    if singular == word:  # invariant nouns: series, news
        return True, word
    reads_as_plural = _inflect_plural(singular) == word
    reads_as_singular = engine.singular_noun(_inflect_plural(word)) == word
    if reads_as_plural and reads_as_singular:
        # "people" -> "person" (irregular: trust it) versus "bus" -> "bu" (a
        # stripped trailing "s" on a word that pluralizes regularly: singular).
        return (singular != word[:-1]), (singular if singular != word[:-1] else word)
    if reads_as_singular:
        return False, word
    return True, singular


def _split(word: str) -> tuple[str, str]:
    head, sep, last = word.rpartition("_")
    return head + sep, last


@lru_cache(maxsize=4096)
def _analyse(word: str) -> tuple[bool, str]:
    """Return ``(is_plural, singular_form)`` for one word (no underscores)."""
    if not word:
        return False, word
    if word in _SINGULAR_OF:
        return True, _SINGULAR_OF[word]
    if word in _RECORDED:
        return False, word
    return _inflect_analyse(word)


def is_plural(word: str) -> bool:
    """True when the (last word of the) name is already plural."""
    return _analyse(_split(word)[1])[0]


@lru_cache(maxsize=4096)
def pluralize(word: str) -> str:
    """The plural of ``word``; a word that is already plural is returned unchanged."""
    head, last = _split(word)
    plural, _ = _analyse(last)
    if plural or not last:
        return word
    return head + (_RECORDED.get(last) or _inflect_plural(last))


@lru_cache(maxsize=4096)
def singularize(word: str) -> str:
    """The singular of ``word``; a word that is already singular is returned unchanged."""
    head, last = _split(word)
    _, singular = _analyse(last)
    return head + singular
