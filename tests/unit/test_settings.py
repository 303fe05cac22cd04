import pytest

from greeter.settings import Settings, SettingsError, load_settings


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
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env)
