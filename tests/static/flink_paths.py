"""How Flink 1.16 reads the options that name local folders, so that the static tests hold a rendered value to
what Flink makes of it, not to what it looks like.

Flink splits a list of folders on "," and on `File.pathSeparator` (":" on Linux) before it looks at any part:
`ConfigurationUtils.splitPaths` for `io.tmp.dirs` and `taskmanager.state.local.root-dirs`, and the same split in
`EmbeddedRocksDBStateBackend` for `state.backend.rocksdb.localdir`. A URI is therefore cut in two:
`file:///local/state/recovery` becomes the relative folder `file` and `///local/state/recovery`, and a TaskManager
given it died with `Could not create root directory for local recovery: file/localState_...`. The working
directories are single paths (`new File(value)`), never split.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

PATH_LIST_OPTIONS = ("io.tmp.dirs", "taskmanager.state.local.root-dirs", "state.backend.rocksdb.localdir")
SINGLE_PATH_OPTIONS = ("process.taskmanager.working-dir", "process.jobmanager.working-dir")


def split_paths(value: str) -> list[str]:
    """Flink's `splitPaths`: Java's `value.split(",|:")`, which drops trailing empty strings (not leading ones)."""
    if not value:
        return []
    parts = re.split(r",|:", value)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def local_folders(conf: dict[str, str]) -> dict[str, list[str]]:
    """Each folder option the configuration sets, with the folders Flink reads from it."""
    found = {key: split_paths(conf[key]) for key in PATH_LIST_OPTIONS if key in conf}
    found |= {key: [conf[key]] for key in SINGLE_PATH_OPTIONS if key in conf}
    return found


def not_absolute(conf: dict[str, str]) -> list[str]:
    """`key: part` for every folder Flink would read as a relative path."""
    return [
        f"{key}: {part!r}"
        for key, parts in local_folders(conf).items()
        for part in parts
        if not PurePosixPath(part).is_absolute()
    ]
