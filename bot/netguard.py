"""Where the bot may fetch from or send to, for every URL it did not write itself (issue 19, item 1).

A URL taken from an answer (a result's ``video.url``, an ``upload_url``, every redirect) or from Discord
(a picture on its CDN) is used only when it is ``https`` to a public address: the host is resolved, and
every address it resolves to must be globally reachable (not private, loopback, link-local, shared,
multicast, reserved or unspecified, also when written as IPv4-mapped, NAT64 or 6to4 IPv6). The request
then goes to the address that was checked (the URL's host stays in ``Host`` and TLS's server name, so the
certificate is still verified against it): a name that resolves differently a moment later (DNS
rebinding) cannot send it elsewhere.

The operator's exceptions are ``SUNRA_FILE_HOSTS``: ``host[:port]`` entries, comma-separated. An entry
matches a URL's host and port exactly (no port: the scheme's default port), so an unlisted port on a
listed address is refused; a listed host may also use ``http`` and any address. Redirects are followed by
:func:`guarded_stream` itself, each hop checked the same way, at most MAX_REDIRECTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from bot.errors import BotError
from bot.i18n import _

MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
# 64:ff9b::/96 (NAT64) carries an IPv4 address in its last 32 bits; 2002::/16 (6to4) in bits 16-48.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UnsafeUrl(BotError):
    """A URL the bot does not fetch from or send to; ``str()`` says why (the URL without its query)."""

    user_message = _(
        "The video service pointed the bot to an address it does not fetch from, so nothing was used "
        "and nothing was charged. Trying again may help; if it keeps happening, please tell the bot's "
        "operator."
    )
    retryable = True

    def __init__(self, reason: str) -> None:
        super().__init__(None)
        self.reason = reason
        self.args = (reason,)

    def __str__(self) -> str:
        return self.reason


def parse_file_hosts(text: str | Iterable[str]) -> frozenset[tuple[str, int | None]]:
    """``SUNRA_FILE_HOSTS`` as (lower-case host, port or None) pairs. Raises ValueError on an entry that
    is not ``host`` or ``host:port`` (``[v6]:port`` for IPv6)."""
    entries = text.split(",") if isinstance(text, str) else list(text)
    hosts: set[tuple[str, int | None]] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            parsed = httpx.URL(f"http://{entry}")
        except httpx.InvalidURL as exc:
            raise ValueError(f"{entry!r} is not host[:port]") from exc
        if not parsed.host or parsed.path not in ("", "/") or parsed.query or parsed.userinfo:
            raise ValueError(f"{entry!r} is not host[:port]")
        hosts.add((parsed.host.lower(), parsed.port))
    return frozenset(hosts)


def is_public(address: IpAddress) -> bool:
    """True for an address that is globally reachable, looking through IPv4 embedded in IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            return False  # a tunnel to whatever its client half says: never needed for a file host
        if embedded is not None:
            return is_public(embedded)  # the IPv4 address it really reaches decides
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: ``url`` to send to (pinned to the checked address unless the host is listed), and
    the ``headers``/``extensions`` that keep the original host for HTTP and TLS."""

    original: httpx.URL
    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str]


class UrlPolicy:
    """The rule above, with the operator's listed hosts. ``resolve`` is injectable for tests."""

    def __init__(self, file_hosts: str | Iterable[str] = (), *, resolve: Resolver = system_resolve) -> None:
        self.listed = parse_file_hosts(file_hosts)
        self._resolve = resolve

    def is_listed(self, url: httpx.URL) -> bool:
        host = (url.host or "").lower()
        port = url.port or DEFAULT_PORTS.get(url.scheme)
        default = DEFAULT_PORTS.get(url.scheme)
        return (host, port) in self.listed or (port == default and (host, None) in self.listed)

    async def check(self, url: str | httpx.URL) -> Target:
        """The Target for ``url``; raises UnsafeUrl when the rule refuses it, httpx.ConnectError when
        its name does not resolve (a transport failure, retried as one)."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise UnsafeUrl("not a URL") from None
        shown = str(parsed.copy_with(query=None, fragment=None, username=None, password=None))
        if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
            raise UnsafeUrl(f"{shown}: not an absolute http(s) URL")
        if parsed.userinfo:
            raise UnsafeUrl(f"{shown}: carries credentials")
        if self.is_listed(parsed):
            return Target(parsed, parsed, {}, {})
        if parsed.scheme != "https":
            raise UnsafeUrl(f"{shown}: not https and not listed in SUNRA_FILE_HOSTS")
        port = parsed.port or 443
        try:
            literal: IpAddress | None = ipaddress.ip_address(parsed.host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self._resolve(parsed.host, port)
            except OSError as exc:
                # Not a refusal: DNS may be down for a moment, so callers retry it like a connection.
                raise httpx.ConnectError(
                    f"{shown}: its name does not resolve ({type(exc).__name__})"
                ) from None
            addresses = []
            for text in found:
                with contextlib.suppress(ValueError):
                    addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
        if not addresses:
            raise UnsafeUrl(f"{shown}: no address")
        refused = [str(address) for address in addresses if not is_public(address)]
        if refused:
            raise UnsafeUrl(f"{shown}: resolves to a non-public address ({', '.join(refused[:3])})")
        pinned = parsed.copy_with(host=str(addresses[0]))
        host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
        return Target(parsed, pinned, {"Host": host_header}, {"sni_hostname": parsed.host})


@contextlib.asynccontextmanager
async def guarded_stream(
    client: httpx.AsyncClient,
    policy: UrlPolicy,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.Response]:
    """A streamed response from ``url``, every hop checked by ``policy`` before it is sent (``client``
    must not follow redirects itself). Raises UnsafeUrl, httpx.TransportError; a redirect loop or one
    past MAX_REDIRECTS raises UnsafeUrl too."""
    target_url: str | httpx.URL = url
    for _attempt in range(MAX_REDIRECTS + 1):
        target = await policy.check(target_url)
        request = client.build_request(
            method,
            target.url,
            content=content,
            headers={**(headers or {}), **target.headers},
            extensions=target.extensions,
        )
        response = await client.send(request, stream=True)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_CODES or not location:
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        try:
            target_url = target.original.join(location)
        except httpx.InvalidURL:
            raise UnsafeUrl("a redirect to something that is not a URL") from None
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, content = "GET", None
    raise UnsafeUrl(f"more than {MAX_REDIRECTS} redirects")
