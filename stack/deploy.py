"""Renders the container stack's flink-conf.yaml from the same settings as the local stack.

`python -m stack.deploy` rewrites deploy/compose/flink-conf.yaml; tests/static fails when the committed
file differs from what this renders, so the two stacks cannot drift.
"""

import sys
from pathlib import Path

from .config import REPO_ROOT, StackConfig
from .flinkconf import OFFICIAL, pipeline_entries, render

COMPOSE_FLINK_CONF = REPO_ROOT / "deploy" / "compose" / "flink-conf.yaml"


def container_entries() -> list[tuple[str, str, str]]:
    """Paths inside the apache/flink-statefun image; hosts and ports are the image's (MASTER_HOST)."""
    return [
        ("statefun.flink-job-name", "Greeter", "the job's name in the REST API and web UI"),
        ("state.backend.rocksdb.localdir", "/local/state/rocksdb", OFFICIAL),
        ("taskmanager.state.local.root-dirs", "file:///local/state/recovery", OFFICIAL),
        ("state.checkpoints.dir", "file:///checkpoint-dir", "a volume shared by master and worker"),
        ("rest.bind-address", "0.0.0.0", "the web UI is published to the host (8081)"),
    ]


def render_compose_flink_conf() -> str:
    header = "Rendered by stack/deploy.py (`python -m stack.deploy`) from the settings the local stack uses."
    return render(pipeline_entries(StackConfig()) + container_entries(), header)


def main() -> int:
    COMPOSE_FLINK_CONF.parent.mkdir(parents=True, exist_ok=True)
    COMPOSE_FLINK_CONF.write_text(render_compose_flink_conf(), encoding="utf-8")
    print(f"wrote {Path(COMPOSE_FLINK_CONF).relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
