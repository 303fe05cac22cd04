"""module.yaml is the runtime's half of the wiring: hold it to the code's names and to the contracts."""

from pathlib import Path
from typing import Any

import yaml

from greeter.config import wiring
from greeter.function.types import GREET_REQUEST_TYPE
from stack.config import INGRESS_GROUP

ROOT = Path(__file__).resolve().parents[2]


def documents() -> dict[str, dict[str, Any]]:
    docs = list(yaml.safe_load_all((ROOT / "module.yaml").read_text()))
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)) == 3, kinds
    return {doc["kind"]: doc["spec"] for doc in docs}


def test_endpoint_serves_the_greeter_over_http() -> None:
    endpoint = documents()["io.statefun.endpoints.v2/http"]
    namespace = wiring.FUNCTION_TYPE.split("/")[0]
    assert endpoint["functions"] == f"{namespace}/*"
    assert endpoint["urlPathTemplate"].endswith(":8000/statefun")
    # Timeouts belong to the transport in v2 endpoints; at spec level StateFun 3.3 silently ignores them.
    assert "timeouts" not in endpoint
    assert endpoint["transport"]["type"] == "io.statefun.transports.v1/async"
    assert endpoint["transport"]["call"] == "1min"  # explicit: an outage is noticed only after it
    assert int(endpoint["maxNumBatchRequests"]) > 0


def test_ingress_reads_names_from_the_start_into_the_greeter() -> None:
    ingress = documents()["io.statefun.kafka.v1/ingress"]
    assert ingress["startupPosition"]["type"] == "earliest"
    assert ingress["consumerGroupId"] == INGRESS_GROUP  # the group whose lag `greeter-stack status` shows
    (topic,) = ingress["topics"]
    assert topic["topic"] == wiring.NAMES_TOPIC
    assert topic["valueType"] == GREET_REQUEST_TYPE.typename == "type.googleapis.com/example.GreetRequest"
    assert topic["targets"] == [wiring.FUNCTION_TYPE]


def test_egress_is_exactly_once_under_the_id_the_function_uses() -> None:
    egress = documents()["io.statefun.kafka.v1/egress"]
    assert egress["id"] == wiring.EGRESS_ID
    semantic = egress["deliverySemantic"]
    assert semantic["type"] == "exactly-once"
    # `transactionTimeoutMillis: 15min` parses to 0 in StateFun 3.3; only `transactionTimeout` takes a duration.
    assert semantic["transactionTimeout"] == "15min"
    assert "transactionTimeoutMillis" not in semantic


def test_ingress_and_egress_use_the_same_broker() -> None:
    docs = documents()
    assert docs["io.statefun.kafka.v1/ingress"]["address"] == docs["io.statefun.kafka.v1/egress"]["address"]
