"""Where the command finds its server and token: options, then the environment, then the config file.

The file (`castray login` writes it) is `<user config dir>/castray/config.json`, or the path in
CASTRAY_CONFIG. It holds a token per server URL and which server is the default, and is only
ever readable by its owner (0600, in a 0700 directory): a token is as good as a password.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

APP = "castray"


class ConfigError(Exception):
    """No usable configuration: the command line has to say more (a usage error)."""


def config_path() -> Path:
    explicit = os.environ.get("CASTRAY_CONFIG")
    if explicit:
        return Path(explicit)
    # typer's (click's) app dir is the platform's: $XDG_CONFIG_HOME or ~/.config on Linux, Application
    # Support on macOS, %APPDATA% on Windows.
    return Path(typer.get_app_dir(APP)) / "config.json"


def load() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix or remove it") from None
    return data if isinstance(data, dict) else {}


def save(data: dict[str, Any]) -> Path:
    """Write the file atomically, created 0600 so the token is never readable by others."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def normalise(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def remember(url: str, token: str, user: str) -> Path:
    data = load()
    servers = data.setdefault("servers", {})
    servers[normalise(url)] = {"token": token, "user": user}
    data["default"] = normalise(url)
    return save(data)


def forget(url: str | None) -> str | None:
    """Drop the token of `url` (default: the default server); the URL it dropped, or None."""
    data = load()
    servers = data.get("servers", {})
    key = normalise(url) if url else data.get("default")
    if not key or key not in servers:
        return None
    del servers[key]
    if data.get("default") == key:
        data["default"] = next(iter(servers), None)
    save(data)
    return key


@dataclass
class Settings:
    url: str
    token: str


def resolve(url: str | None, token: str | None) -> Settings:
    """The server and token to use: options win over CASTRAY_URL/CASTRAY_TOKEN, then the file."""
    url = url or os.environ.get("CASTRAY_URL") or None
    token = token or os.environ.get("CASTRAY_TOKEN") or None
    data = load()
    servers = data.get("servers", {})
    if url is None:
        url = data.get("default")
    if not url:
        raise ConfigError("no CastRay server: pass --url, set CASTRAY_URL, or run `castray login URL` once")
    url = normalise(url)
    if token is None:
        token = (servers.get(url) or {}).get("token") or ""
    return Settings(url=url, token=token)
