import pytest

from greeter.function.greeting import compute_greeting


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (1, "Welcome Ada"),
        (2, "Nice to see you again Ada"),
        (3, "Third time is a charm Ada"),
        (4, "Nice to see you at the 4-nth time Ada!"),
        (1234, "Nice to see you at the 1234-nth time Ada!"),
    ],
)
def test_walkthrough_strings(seen: int, expected: str) -> None:
    assert compute_greeting("Ada", seen) == expected


def test_unicode_names_are_kept_verbatim() -> None:
    assert compute_greeting("Zoë 🚀", 2) == "Nice to see you again Zoë 🚀"


def test_names_with_braces_are_not_templates() -> None:
    assert compute_greeting("{0}%s", 1) == "Welcome {0}%s"


@pytest.mark.parametrize("seen", [0, -1])
def test_a_count_below_one_is_refused(seen: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        compute_greeting("Ada", seen)
