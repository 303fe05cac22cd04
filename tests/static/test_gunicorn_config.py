import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_accepts_the_config_and_loads_the_app() -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [
            str(gunicorn),
            "--check-config",
            "--config",
            str(ROOT / "greeter" / "gunicorn_conf.py"),
            "greeter.app:app",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_setting_stops_gunicorn_naming_the_variable() -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = subprocess.run(
        [str(gunicorn), "--check-config", "--config", str(ROOT / "greeter" / "gunicorn_conf.py"), "greeter.app:app"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "GREETER_READ_TIMEOUT": "soon"},
    )
    assert result.returncode != 0
    assert "greeter: GREETER_READ_TIMEOUT='soon' is not an integer" in result.stderr
    assert "Traceback" not in result.stderr
