import os

import pytest

from greeter.config.settings import Settings, SettingsError, load_settings, with_overrides


def test_defaults_when_nothing_is_set() -> None:
    assert load_settings({}) == Settings()
    assert Settings().seen_count_ttl_seconds == 0


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "GREETER_SEEN_COUNT_TTL": "60",
            "GREETER_MAX_NAME_LENGTH": "10",
            "GREETER_MAX_REQUEST_BYTES": "4096",
            "GREETER_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        seen_count_ttl_seconds=60, max_name_length=10, max_request_bytes=4096, log_level="DEBUG"
    )


def test_zero_ttl_means_never_forget() -> None:
    assert load_settings({"GREETER_SEEN_COUNT_TTL": "0"}).seen_count_ttl_seconds == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GREETER_SEEN_COUNT_TTL": "sixty"}, "GREETER_SEEN_COUNT_TTL='sixty' is not an integer"),
        ({"GREETER_SEEN_COUNT_TTL": "-5"}, "GREETER_SEEN_COUNT_TTL=-5 must be at least 0"),
        ({"GREETER_MAX_NAME_LENGTH": "0"}, "GREETER_MAX_NAME_LENGTH=0 must be at least 1"),
        ({"GREETER_MAX_REQUEST_BYTES": "12"}, "GREETER_MAX_REQUEST_BYTES=12 must be at least 1024"),
        ({"GREETER_LOG_LEVEL": "loud"}, "GREETER_LOG_LEVEL='LOUD' is not one of"),
        ({"GREETER_BIND": "8000"}, "GREETER_BIND='8000' is not HOST:PORT"),
        ({"GREETER_BIND": "localhost:http"}, "GREETER_BIND='localhost:http' is not HOST:PORT"),
        ({"GREETER_BIND": "0.0.0.0:70000"}, "GREETER_BIND='0.0.0.0:70000' is not HOST:PORT"),
        ({"GREETER_WORKERS": "two"}, "GREETER_WORKERS='two' is not an integer"),
        ({"GREETER_WORKERS": "-1"}, "GREETER_WORKERS=-1 must be at least 0"),
        ({"GREETER_KEEPALIVE": "0"}, "GREETER_KEEPALIVE=0 must be at least 1"),
        ({"GREETER_READ_TIMEOUT": "1.5"}, "GREETER_READ_TIMEOUT='1.5' is not an integer"),
        ({"GREETER_READ_TIMEOUT": "0"}, "GREETER_READ_TIMEOUT=0 must be at least 1"),
        ({"GREETER_MAX_CONNECTIONS": "0"}, "GREETER_MAX_CONNECTIONS=0 must be at least 1"),
        ({"GREETER_MAX_REQUEST_LINE": "100"}, "GREETER_MAX_REQUEST_LINE=100 must be at least 256"),
        ({"GREETER_MAX_HEADER_BYTES": "512"}, "GREETER_MAX_HEADER_BYTES=512 must be at least 1024"),
        ({"GREETER_TIMEOUT": "never"}, "GREETER_TIMEOUT='never' is not an integer"),
        ({"GREETER_GRACEFUL_TIMEOUT": "0"}, "GREETER_GRACEFUL_TIMEOUT=0 must be at least 1"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_every_server_setting_is_parsed() -> None:
    settings = load_settings(
        {
            "GREETER_BIND": "0.0.0.0:9000",
            "GREETER_WORKERS": "3",
            "GREETER_WORKER_CLASS": "sync",
            "GREETER_KEEPALIVE": "5",
            "GREETER_READ_TIMEOUT": "4",
            "GREETER_MAX_CONNECTIONS": "20",
            "GREETER_MAX_REQUEST_LINE": "1000",
            "GREETER_MAX_HEADER_BYTES": "2048",
            "GREETER_TIMEOUT": "7",
            "GREETER_GRACEFUL_TIMEOUT": "6",
        }
    )
    assert settings == Settings(
        bind="0.0.0.0:9000",
        workers=3,
        worker_class="sync",
        keepalive_seconds=5,
        read_timeout_seconds=4,
        max_connections=20,
        max_request_line_bytes=1000,
        max_header_bytes=2048,
        timeout_seconds=7,
        graceful_timeout_seconds=6,
    )
    assert settings.worker_count == 3


def test_zero_workers_means_one_per_cpu() -> None:
    assert load_settings({}).worker_count == (os.cpu_count() or 1)


def test_flags_override_and_are_checked_like_their_variables() -> None:
    settings = with_overrides(load_settings({"GREETER_BIND": "127.0.0.1:1"}), bind="127.0.0.1:2", workers=4)
    assert (settings.bind, settings.workers) == ("127.0.0.1:2", 4)
    assert with_overrides(settings, bind=None, workers=None) == settings
    with pytest.raises(SettingsError, match="--bind='nowhere' is not HOST:PORT"):
        with_overrides(settings, bind="nowhere", workers=None)
    with pytest.raises(SettingsError, match="--workers=-2 must be at least 0"):
        with_overrides(settings, bind=None, workers=-2)
