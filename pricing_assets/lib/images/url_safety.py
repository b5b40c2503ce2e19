"""SSRF guard for image links: only ``http``/``https`` URLs to public addresses.

:func:`check_url` refuses a URL whose scheme is not http/https, that has no host, or (unless
``allow_private_hosts``) whose host is or resolves to a loopback, private, link-local, multicast,
reserved or unspecified address (IPv4-mapped IPv6 addresses are checked as IPv4). The fetcher
(:func:`pricing_assets.lib.images.fetch.fetch_images`) calls it on every request, redirect hops included.
Limitation: the address is checked before httpx resolves the name again, so a DNS-rebinding
attacker could still race the check.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from pricing_assets.lib.images.decode import ImageRejected


def _is_blocked_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_url(url: str, allow_private_hosts: bool = False) -> None:
    """Refuse URLs the fetcher must not request.

    Args:
        url: absolute URL.
        allow_private_hosts: skip the address check (for local test servers and intranets).

    Raises:
        ImageRejected: status ``invalid_url`` when the scheme is not http/https, the host is
            missing, or (unless ``allow_private_hosts``) the host is or resolves to a loopback,
            private, link-local, multicast, reserved or unspecified address.
        httpx.ConnectError: when the host name does not resolve (treated as a transient
            connection error by the caller).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImageRejected("invalid_url", f"unparseable URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ImageRejected("invalid_url", f"scheme {scheme or '(none)'!r} not allowed (http/https only)")
    host = parts.hostname
    if not host:
        raise ImageRejected("invalid_url", "URL has no host")
    if allow_private_hosts:
        return
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, port or (443 if scheme == "https" else 80))}
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve host {host!r}: {exc}") from exc
    blocked = sorted(a for a in addrs if _is_blocked_address(a))
    if blocked:
        raise ImageRejected(
            "invalid_url",
            f"host {host!r} resolves to non-public address {blocked[0]} (set allow_private_hosts=True to permit)",
        )
