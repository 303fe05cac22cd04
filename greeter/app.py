"""The contract's WSGI app, `greeter.app:app` (a Flask app), for a WSGI server of the user's choice.

It is built from the environment on first access, not at import. The app itself is greeter/web/app.py;
greeter-serve (greeter/server/serve.py) builds its own from the Settings it read.
"""

from flask import Flask

from greeter.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Flask:
    """Return `app`, built from the environment on its first access and kept; AttributeError for other names."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = globals()["app"] = create_app()
    return app
