"""`python -m bot.healthcheck`: the Docker HEALTHCHECK. Exits 0 when the monitoring listener is off
(`HTTP__PORT` unset or 0: nothing to ask, the container counts as healthy while it runs), else 0 only
when the bot's `/healthz` answers 200. Standard library only for the request: slim images have no curl."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from bot.config import ConfigError, load_tool_settings

TIMEOUT_SECONDS = 4.0
# A listener on every interface is asked on loopback.
_ANY = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def healthz_url() -> str | None:
    """The URL of /healthz from the bot's settings (environment, .env, TOML), or None when off."""
    http = load_tool_settings().http
    if not http.port:
        return None
    host = _ANY.get(http.host, http.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{http.port}/healthz"


def main() -> int:
    try:
        url = healthz_url()
    except ConfigError as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            print(answer.read().decode(errors="replace"))
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as error:
        print(error.read().decode(errors="replace"))
        return 1
    except (OSError, ValueError) as error:
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
