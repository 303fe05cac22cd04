"""The tuning benchmark's variants: each changes exactly the setting it names, in a module.yaml the stack accepts."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from bench import tuning
from stack.config import StackConfig
from stack.local import LocalStack
from stack.render import render_module_yaml

SOURCE = StackConfig().module_yaml.read_text(encoding="utf-8")


def documents(text: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(text) if doc}


def test_the_default_variant_renders_the_shipped_module_unchanged() -> None:
    assert documents(tuning.module_yaml(SOURCE, tuning.BY_NAME["default"])) == documents(SOURCE)


@pytest.mark.parametrize("variant", tuning.VARIANTS, ids=lambda v: v.name)
def test_each_variant_changes_only_its_own_keys_and_still_renders_for_the_stack(variant: tuning.Variant) -> None:
    shipped, rendered = documents(SOURCE), documents(tuning.module_yaml(SOURCE, variant))
    endpoint, egress = rendered[tuning.ENDPOINT_KIND], rendered[tuning.EGRESS_KIND]
    assert endpoint == {**shipped[tuning.ENDPOINT_KIND], **variant.endpoint}
    shipped_properties = {k: v for entry in shipped[tuning.EGRESS_KIND]["properties"] for k, v in entry.items()}
    expected_properties = [{key: value} for key, value in {**shipped_properties, **variant.producer}.items()]
    assert egress["properties"] == expected_properties
    assert {k: v for k, v in egress.items() if k != "properties"} == {
        k: v for k, v in shipped[tuning.EGRESS_KIND].items() if k != "properties"
    }
    ingress = rendered[tuning.INGRESS_KIND]
    assert ingress.get("properties", []) == [{key: value} for key, value in variant.consumer.items()]
    assert {k: v for k, v in ingress.items() if k != "properties"} == shipped[tuning.INGRESS_KIND]
    local = documents(
        render_module_yaml(tuning.module_yaml(SOURCE, variant), greeter_port=18000, kafka_servers="127.0.0.1:19092")
    )
    assert local[tuning.ENDPOINT_KIND]["urlPathTemplate"] == "http://127.0.0.1:18000/statefun"
    replace(StackConfig(run_dir=Path("/nonexistent")), **variant.config)  # every config key is a StackConfig field


def test_producer_defaults_variant_puts_the_kafka_client_defaults_over_the_shipped_batching() -> None:
    egress = documents(tuning.module_yaml(SOURCE, tuning.BY_NAME["producer-defaults"]))[tuning.EGRESS_KIND]
    assert egress["properties"] == [{"linger.ms": "0"}, {"batch.size": "16384"}]
    assert documents(SOURCE)[tuning.EGRESS_KIND]["properties"] == [{"linger.ms": 20}, {"batch.size": 262144}]


def test_a_partly_saved_sweep_renders_the_variants_that_ran() -> None:
    result = {"names": [100], "variants": {"default": {"setting": "d", "rounds": [_round(1000)]}}}
    result["variants"]["okhttp"] = {"setting": "o", "rounds": []}
    assert [row.split(" | ")[0] for row in tuning.markdown(result)[2:]] == ["| default"]


@pytest.mark.parametrize("name, size", [("pool-size-16", 16), ("pool-size-128", 128)])
def test_pool_variants_keep_the_shipped_transport_and_call_timeout_and_set_only_the_pool(name: str, size: int) -> None:
    shipped = documents(SOURCE)[tuning.ENDPOINT_KIND]["transport"]
    transport = documents(tuning.module_yaml(SOURCE, tuning.BY_NAME[name]))[tuning.ENDPOINT_KIND]["transport"]
    assert transport == {**shipped, "pool_size": size}


def test_consumer_variant_sets_the_ingress_fetch_properties_as_strings_the_kafka_client_parses() -> None:
    ingress = documents(tuning.module_yaml(SOURCE, tuning.BY_NAME["consumer-fetch-batching"]))[tuning.INGRESS_KIND]
    assert ingress["properties"] == [{"fetch.min.bytes": "32768"}, {"fetch.max.wait.ms": "100"}]
    assert "properties" not in documents(SOURCE)[tuning.INGRESS_KIND]


def test_okhttp_variant_uses_the_transport_timeouts_that_transport_reads() -> None:
    transport = documents(tuning.module_yaml(SOURCE, tuning.BY_NAME["okhttp"]))[tuning.ENDPOINT_KIND]["transport"]
    assert transport == {"type": "io.statefun.transports.v1/okhttp", "timeouts": {"call": "1min"}}


def test_unknown_variant_names_are_refused_with_the_choices() -> None:
    with pytest.raises(SystemExit):
        tuning.parse(["--variants", "default,turbo"])
    assert [v.name for v in tuning.parse(["--variants", "okhttp,default"]).variants] == ["okhttp", "default"]


def _round(greetings_per_s: float) -> dict[str, Any]:
    backlog = {"correct": True, "greetings_per_s_first_to_last": greetings_per_s}
    backlog |= {"greetings_per_s_from_first_sent": greetings_per_s / 2}
    backlog |= {"cpu_seconds_per_1000_greetings_total": 0.1, "messages_per_request": 5.0}
    backlog |= {"peak_rss_mb": {"kafka": 300, "runtime": 500, "greeter": greetings_per_s / 10}}
    latency = {"correct": True, "p50_ms": 1000, "p99_ms": 2400, "cpu_seconds_per_1000_greetings_total": 0.5}
    return {"throughput": {"100": backlog}, "latency": latency, "failed_deliveries": 1, "job_failures": 0}


def test_medians_and_ratios_to_the_default_from_the_same_run() -> None:
    rounds = {"default": [_round(1000), _round(3000)], "okhttp": [_round(1000), _round(1000)]}
    summaries = {name: tuning.summarise(found) for name, found in rounds.items()}
    assert summaries["default"]["greetings_per_s@100"] == 2000
    assert summaries["okhttp"]["failed_deliveries"] == 2  # counts add up over rounds
    assert tuning.ratios(summaries)["okhttp"]["greetings_per_s@100"] == 0.5
    result = {"names": [100], "variants": {name: {"setting": name, "rounds": r} for name, r in rounds.items()}}
    rows = tuning.markdown(result)
    expected = (
        "| okhttp | okhttp | 1,000 / 500 (0.5 / 0.5) | 1,000 / 2,400 | 0.100 | 0.500 | 900 (0.9) | 5.0 | 2 | 0 | yes |"
    )
    assert rows[3] == expected


def test_a_backlog_visible_in_one_transaction_shows_a_dash_not_a_rate() -> None:
    one_commit = _round(1000)
    one_commit["throughput"]["100"]["greetings_per_s_first_to_last"] = None
    result = {"names": [100], "variants": {"checkpoint-5s": {"setting": "5 s", "rounds": [one_commit]}}}
    assert tuning.markdown(result)[2].startswith("| checkpoint-5s | 5 s | - / 500 (- / -) |")


def test_what_a_variant_set_in_the_environment_is_read_back_from_each_running_process() -> None:
    with_it = subprocess.Popen(["sleep", "30"], env={"MALLOC_ARENA_MAX": "2"})
    without = subprocess.Popen(["sleep", "30"], env={})
    try:
        procs = [SimpleNamespace(name="runtime", pid=with_it.pid), SimpleNamespace(name="kafka", pid=without.pid)]
        stack = cast(LocalStack, SimpleNamespace(state=SimpleNamespace(procs=procs)))
        assert tuning.inherited(stack, "MALLOC_ARENA_MAX") == {"runtime": "2", "kafka": None}
    finally:
        for child in (with_it, without):
            child.kill()
            child.wait()
