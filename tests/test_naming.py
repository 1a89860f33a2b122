"""pluralize/singularize: safe on either form, snake_case aware."""

from __future__ import annotations

import pytest

from dbcore.naming import is_plural, pluralize, singularize

PAIRS = [
    ("user", "users"),
    ("person", "people"),
    ("activity", "activities"),
    ("status", "statuses"),
    ("note", "notes"),
    ("entity", "entities"),
    ("memory", "memories"),
    ("child", "children"),
    ("address", "addresses"),
    ("bus", "buses"),
    ("analysis", "analyses"),
    ("activity_type", "activity_types"),
    ("mfa_method", "mfa_methods"),
    ("agent_memory", "agent_memories"),
]


@pytest.mark.parametrize(("singular", "plural"), PAIRS)
def test_pluralize_from_either_form(singular: str, plural: str) -> None:
    assert pluralize(singular) == plural
    assert pluralize(plural) == plural


@pytest.mark.parametrize(("singular", "plural"), PAIRS)
def test_singularize_from_either_form(singular: str, plural: str) -> None:
    assert singularize(plural) == singular
    assert singularize(singular) == singular


@pytest.mark.parametrize(("singular", "plural"), PAIRS)
def test_is_plural(singular: str, plural: str) -> None:
    assert is_plural(plural)
    assert not is_plural(singular)


def test_invariant_nouns_stay_put() -> None:
    assert pluralize("series") == singularize("series") == "series"


def test_only_the_last_snake_case_word_changes() -> None:
    assert pluralize("people_status") == "people_statuses"
    assert singularize("users_activities") == "users_activity"
