from pathlib import Path

import pytest

from stack import daemons
from tests.support.stacks import stack_config


def test_the_developers_shell_does_not_switch_expiry_on_for_a_test_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETER_SEEN_COUNT_TTL", "5")

    assert daemons.env(stack_config(tmp_path), "greeter")["GREETER_SEEN_COUNT_TTL"] == "0"


def test_a_test_that_wants_expiry_gets_its_own_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETER_SEEN_COUNT_TTL", "5")

    assert daemons.env(stack_config(tmp_path, seen_count_ttl=60), "greeter")["GREETER_SEEN_COUNT_TTL"] == "60"
