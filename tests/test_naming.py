"""pluralize/singularize: safe on either form, snake_case aware."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbcore import naming
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


def test_words_outside_the_recorded_table_fall_back_to_inflect() -> None:
    assert "box" not in naming._RECORDED
    assert pluralize("mail_box") == pluralize("mail_boxes") == "mail_boxes"
    assert singularize("mail_boxes") == "mail_box"


@pytest.mark.parametrize(("singular", "plural"), sorted(naming._RECORDED.items()))
def test_recorded_table_agrees_with_inflect(singular: str, plural: str) -> None:
    assert naming._inflect_plural(singular) == plural
    assert naming._inflect_analyse(singular) == (False, singular)
    assert naming._inflect_analyse(plural) == (True, singular)


def test_recorded_table_reads_each_word_one_way() -> None:
    assert not set(naming._RECORDED) & set(naming._SINGULAR_OF)


def test_import_dbcore_does_not_load_inflect() -> None:
    # A fresh interpreter: the fallback tests load inflect into this one.
    code = "import sys, dbcore; print('inflect' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
