"""The per-user state the greeter has released, and the start-up check that a build can still read it.

The runtime keeps each user's state as the bytes the greeter last wrote, under the state's name, and sends them
back with every call. A build that cannot read those bytes would fail every call, and the runtime would retry
and restart the job without end; so a build whose state is not compatible with what was released refuses to
start instead, saying why (the rollout stalls, the old version keeps serving). Compatible, for a protobuf
message: the same typename, every released field still there with its number, type and cardinality; new fields
under new numbers are fine (an older build ignores them, a newer one reads them as their default).

released_state.json lists each released state name with the schema of every version released under it. Add a
version when a release changes the message; never edit or remove one. An incompatible change takes a new state
name (the old counts stay under the old one: docs/operations.md, "Evolving the state").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

RELEASED_STATE = Path(__file__).with_name("released_state.json")

_TYPE_NAMES = {value: name.removeprefix("TYPE_").lower() for name, value in vars(FieldDescriptor).items()
               if name.startswith("TYPE_")}  # fmt: skip


class StateSchemaError(RuntimeError):
    """The build's state is not compatible with the state released under the same name."""


def schema(state_type: Any) -> dict[str, Any]:
    """A state type's schema as released_state.json records it: its typename and, for a protobuf message, each
    field by number as "[repeated ]<type>".
    """
    message_class = getattr(state_type, "message_class", None)
    fields = {}
    if message_class is not None:
        for field in message_class.DESCRIPTOR.fields:
            kind = _TYPE_NAMES[field.type]
            fields[str(field.number)] = f"repeated {kind}" if field.is_repeated else kind
    return {"typename": state_type.typename, "fields": fields}


def incompatibilities(name: str, built: Mapping[str, Any], released: Iterable[Mapping[str, Any]]) -> list[str]:
    """Why state `name` as `built` cannot read a version `released` under that name; empty when it can."""
    problems = []
    for version in released:
        if built["typename"] != version["typename"]:
            problems.append(f"state {name!r} was released as {version['typename']}, this build declares it as "
                            f"{built['typename']}")  # fmt: skip
            continue
        for number, kind in version["fields"].items():
            now = built["fields"].get(number)
            if now != kind:
                problems.append(f"state {name!r} ({version['typename']}) was released with field {number} as {kind}; "
                                f"this build has {now or 'no field'} there")  # fmt: skip
    return problems


def check_released_state(specs: Iterable[Any], released_file: Path = RELEASED_STATE) -> None:
    """StateSchemaError unless every state in `specs` (the SDK's ValueSpecs) can read every version released
    under its name. A state name never released is new: it starts empty, nothing to read.
    """
    released = json.loads(released_file.read_text(encoding="utf-8"))
    problems = [
        problem
        for spec in specs
        for problem in incompatibilities(spec.name, schema(spec.type), released.get(spec.name, []))
    ]
    if problems:
        raise StateSchemaError(
            "; ".join(problems) + ". The runtime holds state in the released form, so every call would fail: keep "
            "released fields as they are and add new ones under new numbers, or give the new schema a new state "
            'name (docs/operations.md, "Evolving the state")'
        )
