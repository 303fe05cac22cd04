import os
import subprocess
import sys
from pathlib import Path

SERVE = Path(sys.executable).with_name("greeter-serve")


def test_greeter_serve_builds_the_app_and_its_gunicorn_configuration() -> None:
    result = subprocess.run([str(SERVE), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_setting_stops_greeter_serve_naming_the_variable() -> None:
    result = subprocess.run(
        [str(SERVE), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GREETER_READ_TIMEOUT": "soon"},
    )
    assert result.returncode == 2
    assert "greeter-serve: GREETER_READ_TIMEOUT='soon' is not an integer" in result.stderr
    assert "Traceback" not in result.stderr
