"""Which addresses a webhook call may reach (the SSRF guard).

A webhook URL is an integrator's input, and KPNS calls it from inside its own
network: unguarded, an API key could make the scheduler POST to
169.254.169.254 (a cloud's instance credentials), to a port on localhost or
to any private service. So an address is checked twice:

* when the endpoint is created (admin and API, ``url_refusal``): a literal
  address in any form the resolver accepts (``2130706433``, ``0x7f.1``,
  ``[::ffff:127.0.0.1]``), a local or metadata name, or a name that resolves
  to a refused address is refused with the reason;
* when each call is made (``addresses_checked``): the name is resolved once,
  every address it resolves to is checked, and the caller connects to one of
  those addresses, sending the URL's name as Host and TLS SNI (the
  certificate is verified against the name). A DNS answer that changes
  between the check and the connection (DNS rebinding) cannot move the call.

Refused: loopback, private, shared (100.64.0.0/10), link-local, multicast,
unspecified, reserved and other non-public ranges, and the cloud metadata
addresses; an IPv4 address inside IPv6 (``::ffff:a.b.c.d``, NAT64, 6to4) is
judged as the IPv4 address. ``KPNS_WEBHOOK_ALLOWED_NETWORKS`` (CIDRs, empty
by default) lets an on-premise receiver through.
"""

import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from devices.conf import kpns_setting

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: AWS, GCP, Azure, OpenStack, DigitalOcean
# (169.254.169.254), AWS over IPv6, Alibaba, Oracle's second address.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data"}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# getaddrinfo has no timeout of its own: it runs in these threads and the
# caller stops waiting after DNS_TIMEOUT_SECONDS.
DNS_TIMEOUT_SECONDS = 3.0
_resolver = ThreadPoolExecutor(4, thread_name_prefix="kpns-dns")


class RefusedAddress(Exception):
    """The URL reaches an address webhooks may not call; str() says why."""


class Unresolved(Exception):
    """The URL's host did not resolve (in time)."""


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def allowed_networks() -> tuple[Network, ...]:
    """KPNS_WEBHOOK_ALLOWED_NETWORKS, parsed."""
    cidrs = tuple(kpns_setting("WEBHOOK_ALLOWED_NETWORKS") or ())
    try:
        return _networks(cidrs)
    except ValueError as exc:
        raise ImproperlyConfigured(f"KPNS_WEBHOOK_ALLOWED_NETWORKS: {exc}") from exc


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why webhooks may not call this address (e.g. "private"), or None."""
    if any(address in network for network in allowed_networks()):
        return None
    inner = _embedded_ipv4(address)
    if inner is not None:
        return address_refusal(inner)
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if address.is_private:
        return "private"
    if address in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (carrier-grade NAT)"
    if not address.is_global:
        return "non-public"
    return None


def _numeric(host: str) -> IPAddress | None:
    """The address a literal host means to the resolver, in any of its forms
    (``127.1``, ``2130706433``, ``0x7f.0.0.1``), without a DNS query."""
    try:
        infos = socket.getaddrinfo(
            host, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])


def resolve(
    host: str, port: int, timeout: float = DNS_TIMEOUT_SECONDS
) -> list[IPAddress]:
    """Every address ``host`` resolves to (literal hosts without DNS)."""
    literal = _numeric(host)
    if literal is not None:
        return [literal]
    future = _resolver.submit(socket.getaddrinfo, host, port, proto=socket.IPPROTO_TCP)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout as exc:
        raise Unresolved(f"{host}: DNS timed out after {timeout:g} s") from exc
    except (OSError, UnicodeError) as exc:
        raise Unresolved(f"{host}: {exc}") from exc
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise Unresolved(f"{host}: no address")
    return found


def _name_refusal(host: str) -> str | None:
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is a loopback name"
    if name in METADATA_NAMES:
        return f"{host} is a cloud metadata name"
    return None


def addresses_checked(host: str, port: int) -> list[IPAddress]:
    """The addresses to connect to for ``host``, all of them allowed.

    Raises RefusedAddress if any address it resolves to is refused (one
    refused answer is enough: the name points inside), Unresolved if it
    does not resolve.
    """
    addresses = resolve(host, port)
    for address in addresses:
        refusal = address_refusal(address)
        if refusal is None:
            continue
        if str(address) == host:
            shown = host
        elif _numeric(host) is not None:
            shown = f"{host} ({address})"
        else:
            shown = f"{host} resolves to {address}, which"
        article = "an" if refusal[0] in "aeiou" else "a"
        raise RefusedAddress(f"{shown} is {article} {refusal} address")
    return addresses


def url_refusal(url: str) -> str | None:
    """Why a webhook URL may not be saved, or None.

    A name that does not resolve now is accepted: its addresses are checked
    again before every call.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "not a valid URL"
    if not host:
        return "no host"
    try:
        addresses_checked(host, port or (443 if parts.scheme == "https" else 80))
    except RefusedAddress as exc:
        return str(exc)
    except Unresolved:
        return _name_refusal(host)
    return None
