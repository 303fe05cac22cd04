"""greeter/function/state_schema.py: the build holds to the released state, a new field is compatible, and a
changed type, a removed field or another typename stops the app at start-up with the reason."""

import json
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor
from statefun import IntType, ValueSpec

from greeter.config.settings import Settings
from greeter.function.state_schema import RELEASED_STATE, StateSchemaError, check_released_state, schema
from greeter.function.types import SEEN_COUNT_TYPE, ProtobufType
from greeter.web.app import create_app
from tests.support.evolved import GreeterCountAsText, SeenCountV2, seen_count_class


def test_the_build_is_the_newest_version_released_under_each_name() -> None:
    released = json.loads(RELEASED_STATE.read_text())
    assert set(released) == {"seen_count", "seen_count_ttl"}
    for versions in released.values():
        assert versions[-1] == schema(SEEN_COUNT_TYPE), "update greeter/function/released_state.json with the release"
    check_released_state([ValueSpec("seen_count", SEEN_COUNT_TYPE), ValueSpec("seen_count_ttl", SEEN_COUNT_TYPE)])


def test_a_new_field_under_a_new_number_is_compatible() -> None:
    check_released_state([ValueSpec("seen_count", ProtobufType(SeenCountV2))])


def test_a_state_name_never_released_starts_empty_whatever_its_type() -> None:
    check_released_state([ValueSpec("seen_count_v2", IntType)])


@pytest.mark.parametrize(
    ("state_type", "reason"),
    [
        (
            ProtobufType(seen_count_class([("seen", 1, FieldDescriptor.TYPE_STRING)])),
            "field 1 as int64; this build has string",
        ),
        (
            ProtobufType(seen_count_class([("seen", 1, FieldDescriptor.TYPE_INT32)])),
            "field 1 as int64; this build has int32",
        ),
        (ProtobufType(seen_count_class([("visits", 2, FieldDescriptor.TYPE_INT64)])), "this build has no field there"),
        (IntType, "released as type.googleapis.com/example.SeenCount, this build declares it as io.statefun.types/int"),
    ],
)
def test_an_incompatible_state_is_refused_with_the_reason(state_type: object, reason: str) -> None:
    with pytest.raises(StateSchemaError, match="state 'seen_count'") as refused:
        check_released_state([ValueSpec("seen_count", state_type)])
    assert reason in str(refused.value) and "give the new schema a new state name" in str(refused.value)


def test_every_released_version_must_stay_readable(tmp_path: Path) -> None:
    released = tmp_path / "released.json"
    older = {"typename": SEEN_COUNT_TYPE.typename, "fields": {"1": "int64", "3": "string"}}
    released.write_text(json.dumps({"seen_count": [older, schema(SEEN_COUNT_TYPE)]}))
    with pytest.raises(StateSchemaError, match="field 3 as string"):
        check_released_state([ValueSpec("seen_count", SEEN_COUNT_TYPE)], released)


def test_the_app_does_not_start_with_an_incompatible_state() -> None:
    with pytest.raises(StateSchemaError, match="field 1 as int64"):
        create_app(Settings(), greeter_type=GreeterCountAsText)
