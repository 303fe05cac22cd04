"""The greeting text: the walkthrough's strings, as a pure function of name and count."""

_FIRST_GREETINGS = ("Welcome {}", "Nice to see you again {}", "Third time is a charm {}")


def compute_greeting(name: str, seen: int) -> str:
    """The greeting for a user seen `seen` times so far, this time included (seen >= 1)."""
    if seen < 1:
        raise ValueError(f"seen must be at least 1, got {seen}")
    if seen <= len(_FIRST_GREETINGS):
        return _FIRST_GREETINGS[seen - 1].format(name)
    return f"Nice to see you at the {seen}-nth time {name}!"
