"""The filter model: building, parsing, validation, normalisation and the evaluator."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from dbcore.DB_Memories import MemoryKind
from dbcore.errors import ValidationError
from dbcore.vectorstores.chroma import to_chroma_where
from dbcore.vectorstores.filters import MEMORY_FIELDS, And, Condition, F, Filter, Or, UnsupportedFilter
from dbcore.vectorstores.pinecone import to_pinecone_filter

ROOM = uuid.UUID("6f2a0d3c-1b2a-4c5d-8e9f-0a1b2c3d4e5f")
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_operators_build_conditions() -> None:
    assert (F("kind") == "fact") == Condition("kind", "eq", "fact")
    assert (F("kind") != "fact") == Condition("kind", "ne", "fact")
    assert (F("priority") > 1) == Condition("priority", "gt", 1)
    assert (F("priority") >= 1) == Condition("priority", "gte", 1)
    assert (F("priority") < 1) == Condition("priority", "lt", 1)
    assert (F("priority") <= 1) == Condition("priority", "lte", 1)
    assert F("kind").in_(["a", "b"]) == Condition("kind", "in", ("a", "b"))
    assert F("kind").nin(("a",)) == Condition("kind", "nin", ("a",))


def test_and_or_combinators() -> None:
    a, b, c = F("kind") == "a", F("priority") > 2, F("lang") == "en"
    assert (a & b) == And(a, b)
    assert (a | b) == Or(a, b)
    assert ((a & b) | c) == Or(And(a, b), c)
    assert And([a, b]) == And(a, b)
    assert (a & b).fields() == frozenset({"kind", "priority"})
    assert repr(And(a, b)).startswith("And(Condition(")


def test_values_are_normalised() -> None:
    assert (F("room_id") == ROOM).value == str(ROOM)
    assert (F("room_id") == str(ROOM).upper()).value == str(ROOM)
    assert (F("created_at") > T0).value == T0.timestamp()
    naive = datetime(2024, 1, 1)
    assert (F("created_at") > naive).value == T0.timestamp()  # naive means UTC
    assert F("room_id").in_([ROOM]).value == (str(ROOM),)
    assert (F("other") == ROOM).value == str(ROOM)  # any UUID value becomes text


def test_parse_dict_forms() -> None:
    assert Filter.parse({"kind": "fact"}) == Condition("kind", "eq", "fact")
    assert Filter.parse({"kind": {"$ne": "fact"}}) == Condition("kind", "ne", "fact")
    assert Filter.parse({"kind": "fact", "priority": {"$gt": 1}}) == And(
        Condition("kind", "eq", "fact"), Condition("priority", "gt", 1)
    )
    assert Filter.parse({"priority": {"$gte": 1, "$lt": 5}}) == And(
        Condition("priority", "gte", 1), Condition("priority", "lt", 5)
    )
    parsed = Filter.parse({"$or": [{"kind": {"$in": ["a", "b"]}}, {"$and": [{"x": 1}, {"y": {"$nin": [2]}}]}]})
    assert parsed == Or(F("kind").in_(["a", "b"]), And(F("x") == 1, F("y").nin([2])))
    assert Filter.parse(parsed) is parsed


def test_to_dict_round_trips() -> None:
    flt = Or(F("kind").in_(["a"]), And(F("priority") >= 2, F("room_id") == ROOM))
    assert flt.to_dict() == {
        "$or": [{"kind": {"$in": ["a"]}}, {"$and": [{"priority": {"$gte": 2}}, {"room_id": {"$eq": str(ROOM)}}]}]
    }
    assert Filter.parse(flt.to_dict()) == flt


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "empty filter"),
        ({"kind": {}}, "no operator"),
        ({"kind": {"$like": "a"}}, "unknown operator"),
        ({"$not": {"kind": "a"}}, "unknown filter operator"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"kind": "a"}}, "non-empty list"),
        ({"kind": None}, "None"),
        ({"kind": {"$in": []}}, "at least one value"),
        ({"kind": {"$in": "abc"}}, "list of values"),
        ({"room_id": "not-a-uuid"}, "not a UUID"),
        ({"priority": float("nan")}, "finite"),
        ({"kind": {"$eq": ["a"]}}, "takes a string"),
        ({"kind": {"$eq": {"nested": 1}}}, "takes a string"),
        ("kind = 'a'", "must be a dict"),
    ],
)
def test_parse_errors(spec: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Filter.parse(spec)  # type: ignore[arg-type]


def test_field_names_are_checked() -> None:
    allowed = MEMORY_FIELDS | {"priority"}
    assert Filter.parse({"priority": 1, "kind": "message"}, allowed)
    with pytest.raises(ValidationError, match="unknown field.*colour"):
        Filter.parse({"$or": [{"kind": "message"}, {"colour": "red"}]}, allowed)
    with pytest.raises(ValidationError, match="unknown field"):
        (F("bogus") == 1).validate_fields(allowed)
    with pytest.raises(ValidationError):
        And()
    with pytest.raises(ValidationError):
        And("kind")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec, bad",
    [
        ({"kind": "x'; DROP TABLE memories; --"}, "x'; DROP TABLE memories; --"),
        ({"kind": {"$nin": ["message", "Fact"]}}, "'Fact'"),
        ({"$or": [{"room_id": ROOM}, {"kind": {"$ne": 3}}]}, "3"),
        ({"kind": {"$gt": "a" * 500}}, "'aaaa"),
    ],
)
def test_kind_values_are_checked_with_the_fields(spec: object, bad: str) -> None:
    """A store's validation refuses kinds no memory has; a bare filter (a backend's own use) still builds."""
    allowed = MEMORY_FIELDS
    assert Filter.parse(spec)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="kind") as caught:
        Filter.parse(spec, allowed)  # type: ignore[arg-type]
    message = str(caught.value)
    assert bad in message and "message, document, fragment, description, custom" in message
    assert len(message) < 200, "a long value is shortened"


def test_memory_kind_members_become_their_names() -> None:
    assert (F("kind") == MemoryKind.FRAGMENT) == Condition("kind", "eq", "fragment")
    assert F("kind").in_([MemoryKind.MESSAGE, "custom"]).value == ("message", "custom")
    assert Filter.parse({"kind": MemoryKind.CUSTOM}, MEMORY_FIELDS).matches({"kind": "custom"})
    assert (F("other") == MemoryKind.FRAGMENT).value == 3  # only the kind field holds names


def test_evaluator_semantics() -> None:
    meta = {"kind": "fact", "priority": 3, "pinned": True, "room_id": ROOM, "created_at": T0, "tags": ["a", "b"]}
    assert (F("kind") == "fact").matches(meta)
    assert not (F("kind") == "goal").matches(meta)
    assert (F("room_id") == str(ROOM)).matches(meta)  # raw UUID vs text
    assert (F("room_id") == ROOM).matches({"room_id": str(ROOM).upper()})
    assert (F("created_at") >= T0).matches(meta)
    assert (F("created_at") < T0 + timedelta(seconds=1)).matches({"created_at": T0.timestamp()})  # stored form
    assert (F("priority") == 3.0).matches(meta)
    assert not (F("priority") == True).matches({"priority": 1})  # noqa: E712 - bools never equal numbers
    assert not (F("pinned") == 1).matches(meta)
    assert not (F("priority") > "2").matches(meta)  # no ordering across types
    assert (F("kind") > "e").matches(meta)  # strings order among themselves
    assert not (F("pinned") > False).matches(meta)
    # missing fields: only the negative operators match
    assert not (F("lang") == "en").matches(meta)
    assert (F("lang") != "en").matches(meta)
    assert (F("lang").nin(["en"])).matches(meta)
    assert not (F("lang").in_(["en"])).matches(meta)
    assert not (F("lang") > 1).matches(meta)
    assert (F("lang") != "en").matches({"lang": None})
    # lists of strings: any element
    assert (F("tags") == "a").matches(meta)
    assert (F("tags").in_(["z", "b"])).matches(meta)
    assert not (F("tags") != "a").matches(meta)
    assert (F("tags").nin(["z"])).matches(meta)
    assert Or(F("kind") == "goal", F("priority") < 4).matches(meta)
    assert not And(F("kind") == "goal", F("priority") < 4).matches(meta)


def test_unsupported_filter_is_a_validation_error() -> None:
    assert issubclass(UnsupportedFilter, ValidationError)


def test_chroma_translation() -> None:
    assert to_chroma_where(And(F("kind") == "a")) == {"kind": {"$eq": "a"}}
    assert to_chroma_where(Or(F("x") > 1, F("y").nin([1, 2.5]))) == {
        "$or": [{"x": {"$gt": 1.0}}, {"y": {"$nin": [1.0, 2.5]}}]
    }
    with pytest.raises(UnsupportedFilter, match="numbers only"):
        to_chroma_where(F("kind") >= "a")
    with pytest.raises(UnsupportedFilter, match="one type"):
        to_chroma_where(F("kind").in_(["a", 1]))


def test_pinecone_translation() -> None:
    flt = And(F("room_id") == ROOM, Or(F("created_at") > T0, F("kind").in_(["a", "b"])))
    assert to_pinecone_filter(flt) == {
        "$and": [
            {"room_id": {"$eq": str(ROOM)}},
            {"$or": [{"created_at": {"$gt": T0.timestamp()}}, {"kind": {"$in": ["a", "b"]}}]},
        ]
    }
    assert to_pinecone_filter(Or(F("pinned") == True)) == {"pinned": {"$eq": True}}  # noqa: E712
    with pytest.raises(UnsupportedFilter):
        to_pinecone_filter(F("kind") < "b")
    with pytest.raises(UnsupportedFilter, match="strings or numbers"):
        to_pinecone_filter(F("pinned").in_([True]))
