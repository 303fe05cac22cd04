"""How tests reach a stack's broker: by its bootstrap servers alone (the plaintext one), or as one of the secured
broker's principals, with that principal's credentials from the run folder (stack/kafka_auth.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from stack.config import StackConfig
from stack.kafka_auth import CONSUMER, CONSUMER_GROUP_PREFIX, secured
from stack.kafka_auth import client_settings as client_settings_of

# Bootstrap servers, or a client's settings with them (a secured broker's: protocol, login, CA).
KafkaTarget = str | Mapping[str, str]


def client_settings(target: KafkaTarget, **defaults: Any) -> dict[str, Any]:
    """A librdkafka configuration: `defaults`, then `target`'s settings over them."""
    given = {"bootstrap.servers": target} if isinstance(target, str) else dict(target)
    return {**defaults, **given}


def as_principal(config: StackConfig, principal: str) -> KafkaTarget:
    """The stack's broker as `principal` sees it: its bootstrap servers, with that principal's login on the
    secured broker (and, for the consumer, a group id under its ACL's prefix).
    """
    if not secured(config):
        return config.bootstrap_servers
    settings = client_settings_of(config, principal)
    if principal == CONSUMER:
        settings["group.id"] = f"{CONSUMER_GROUP_PREFIX}tests-{uuid.uuid4().hex}"
    return settings
