import pytest
from django.core.exceptions import ImproperlyConfigured

from castray_site.env import env_bool, env_int, env_size, parse_size


def test_it_parses_sizes_with_units() -> None:
    assert parse_size("10MB") == 10 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("4096") == 4096
    assert parse_size("64 KiB") == 64 * 1024


@pytest.mark.parametrize("bad", ["ten", "10XB", "-1MB", ""])
def test_it_rejects_bad_sizes(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_bad_environment_values_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BOOL", "maybe")
    monkeypatch.setenv("X_INT", "12a")
    monkeypatch.setenv("X_SIZE", "lots")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL", False)
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="X_SIZE"):
        env_size("X_SIZE", 1)
    monkeypatch.setenv("X_INT", "3")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env_int("X_INT", 1, minimum=5)
