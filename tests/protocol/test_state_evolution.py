"""The state evolved through the protocol: counts written by the released greeter read by one whose SeenCount has a
new field, and back (a rollback), with the runtime stand-in keeping the bytes between calls as the runtime does."""

from collections.abc import Callable

from greeter.config.settings import Settings
from greeter.protocol.harness import RuntimeHarness
from greeter.web.app import create_app
from protos.generated.greeter_pb2 import SeenCount
from tests.support.evolved import GreeterV2, SeenCountV2

from .conftest import post_via
from .messages import greet, greetings

Make = Callable[..., RuntimeHarness]


def test_a_new_field_reads_the_released_counts_and_the_released_greeter_reads_them_back(make_runtime: Make) -> None:
    runtime = make_runtime()
    released = runtime.send
    for _ in range(3):
        runtime.invoke("Ada", [greet("Ada")])
    runtime.send = post_via(create_app(Settings(), greeter_type=GreeterV2))
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Nice to see you at the 4-nth time Ada!")]
    stored = runtime.stored("Ada", "seen_count")
    assert stored is not None and stored.typename == "type.googleapis.com/example.SeenCount"
    evolved = SeenCountV2.FromString(stored.value)
    assert evolved.seen == 4 and evolved.last_seen_ms > 0

    runtime.send = released  # rolled back
    assert greetings(runtime.invoke("Ada", [greet("Ada")])) == [("Ada", "Nice to see you at the 5-nth time Ada!")]
    stored = runtime.stored("Ada", "seen_count")
    assert stored is not None and SeenCount.FromString(stored.value).seen == 5
    assert runtime.missing_state_replies == 1, "the state spec did not change: no new registration round trip"
