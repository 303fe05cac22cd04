"""Names that tie the greeter to the runtime: function type, egress, topics, typenames, state.

module.yaml wires the same names on the runtime's side; tests/static/test_module_yaml.py holds the two together.
"""

from typing import Final

FUNCTION_TYPE: Final = "example/greeter"
EGRESS_ID: Final = "example/greets"

NAMES_TOPIC: Final = "names"
GREETINGS_TOPIC: Final = "greetings"
DEAD_LETTER_TOPIC: Final = "names-dlq"

TYPENAME_PREFIX: Final = "type.googleapis.com"

# Flink 1.16 cannot restore a state whose TTL was switched on or off, so each mode has its own state name.
SEEN_COUNT_STATE: Final = "seen_count"
SEEN_COUNT_TTL_STATE: Final = "seen_count_ttl"


def seen_count_state_name(ttl_seconds: int) -> str:
    """The seen-count state's name: one per TTL mode (on when > 0): Flink cannot restore a state whose TTL changed."""
    return SEEN_COUNT_TTL_STATE if ttl_seconds > 0 else SEEN_COUNT_STATE
