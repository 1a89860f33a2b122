"""Plural and singular forms of table and relationship names, on inflect.

inflect's ``plural_noun`` pluralizes blindly (``"users"`` becomes ``"userss"``)
and ``singular_noun`` guesses at words that merely end in ``s`` (``"bus"``
becomes ``"bu"``). The functions here first decide whether a word is already
plural, so both are safe to call on either form. snake_case names inflect their
last word only: ``activity_types`` <-> ``activity_type``.

Known limits of the heuristic: a few Latin/Greek plurals that inflect does not
round-trip (``axes``, ``bases``) and regular plurals of words ending in a vowel
plus ``s`` that inflect also reads as singular (``menus``) may be misread.
"""

from __future__ import annotations

from functools import lru_cache

import inflect

__all__ = ["pluralize", "singularize", "is_plural"]

_engine = inflect.engine()


def _split(word: str) -> tuple[str, str]:
    head, sep, last = word.rpartition("_")
    return head + sep, last


@lru_cache(maxsize=4096)
def _analyse(word: str) -> tuple[bool, str]:
    """Return ``(is_plural, singular_form)`` for one word (no underscores)."""
    if not word:
        return False, word
    singular = _engine.singular_noun(word)  # type: ignore[arg-type]
    if not singular:
        return False, word
    if singular == word:  # invariant nouns: series, news
        return True, word
    reads_as_plural = _engine.plural_noun(singular) == word  # type: ignore[arg-type]
    reads_as_singular = _engine.singular_noun(_engine.plural_noun(word)) == word  # type: ignore[arg-type]
    if reads_as_plural and reads_as_singular:
        # "people" -> "person" (irregular: trust it) versus "bus" -> "bu" (a
        # stripped trailing "s" on a word that pluralizes regularly: singular).
        return (singular != word[:-1]), (singular if singular != word[:-1] else word)
    if reads_as_singular:
        return False, word
    return True, singular


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
    return head + _engine.plural_noun(last)  # type: ignore[arg-type]


@lru_cache(maxsize=4096)
def singularize(word: str) -> str:
    """The singular of ``word``; a word that is already singular is returned unchanged."""
    head, last = _split(word)
    _, singular = _analyse(last)
    return head + singular
