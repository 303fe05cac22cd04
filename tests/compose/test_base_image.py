"""The base image's set-up path as a new machine meets it: the image absent, made from the machine's own Debian
mirror. Runs first in this folder, under the suite's warnings-as-errors (an unclosed pipe fails it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .engine import docker
from .images import debian_mirror, image_exists, make_base_image

THROWAWAY_TAG = "greeter-ci/debian-setup-test:bookworm"


@pytest.fixture
def absent_tag(engine: None) -> Iterator[str]:
    if image_exists(THROWAWAY_TAG):
        docker("image", "rm", THROWAWAY_TAG)
    try:
        yield THROWAWAY_TAG
    finally:
        if image_exists(THROWAWAY_TAG):
            docker("image", "rm", THROWAWAY_TAG)


def test_base_image_is_made_when_absent_from_the_machines_mirror(absent_tag: str) -> None:
    make_base_image(absent_tag)

    assert image_exists(absent_tag)
    sources = docker("run", "--rm", "--network", "none", absent_tag, "cat", "/etc/apt/sources.list")
    assert f"deb {debian_mirror()} bookworm main" in sources
