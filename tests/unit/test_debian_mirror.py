from pathlib import Path

import pytest

from tests.compose.images import debian_mirror


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_deb822_sources_give_the_release_suites_uri_not_securitys(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\n# http://snapshot.example/archive\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                "Components: main\n"
            ),
        },
    )
    assert debian_mirror(apt) == "http://mirror.example/debian"


def test_one_line_sources_list_with_options(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path,
        {
            "sources.list": (
                "# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://proxy.example/d bookworm main\n"
            )
        },
    )
    assert debian_mirror(apt) == "http://proxy.example/d"


def test_no_source_for_the_suite_says_so(tmp_path: Path) -> None:
    apt = _apt_dir(
        tmp_path, {"sources.list.d/other.sources": "Types: deb\nURIs: http://x.example/n\nSuites: nodistro\n"}
    )
    with pytest.raises(RuntimeError, match="no apt source for Debian bookworm"):
        debian_mirror(apt)


def test_this_machines_mirror_is_found() -> None:
    assert debian_mirror().startswith(("http://", "https://"))
