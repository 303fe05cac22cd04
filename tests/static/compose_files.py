"""Reading compose files without a Docker engine: the Compose specification's merge of an override onto
docker-compose.yml, and the mounts of a merged service (tests/static/test_compose_*.py)."""

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("data") / "compose-spec.json"


def volume_target(volume: str | dict[str, Any]) -> str:
    """The key Compose merges service volumes by: the mount target, in short (SOURCE:TARGET[:MODE]) or long syntax."""
    if isinstance(volume, dict):
        return str(volume["target"])
    parts = volume.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """The Compose specification's merge (compose-spec, "Merge"), for what these files use: mappings merge key by
    key; command, entrypoint and healthcheck.test are replaced; a service's volumes are unique by target (a later
    one takes the earlier one's place); other sequences are appended."""
    if path[-1:] in (("command",), ("entrypoint",)) or path[-2:] == ("healthcheck", "test"):
        return override
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value, (*path, key)) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        if len(path) == 3 and path[0] == "services" and path[2] == "volumes":
            by_target: dict[str, Any] = {}
            for volume in base + override:
                by_target[volume_target(volume)] = volume  # dicts keep the first position of a key
            return list(by_target.values())
        return base + override
    assert type(base) is type(override), f"{'.'.join(path)}: {type(base).__name__} and {type(override).__name__}"
    return override


def mounts(service: dict[str, Any]) -> dict[str, str | dict[str, Any]]:
    """target -> the volume entry; every target once."""
    targets = [volume_target(volume) for volume in service["volumes"]]
    assert len(targets) == len(set(targets)), targets
    return dict(zip(targets, service["volumes"], strict=True))


def assert_read_only_bind_of(volume: str | dict[str, Any], source: str) -> None:
    # Long syntax with create_host_path: false (recent Compose defaults to true): a missing file is an error,
    # not a new folder.
    assert isinstance(volume, dict), volume
    assert volume["type"] == "bind" and volume["source"] == source, volume
    assert volume["read_only"] is True and volume["bind"]["create_host_path"] is False, volume
