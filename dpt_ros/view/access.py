"""
Who may use the view: Host and Origin checks, and the access token. No aiohttp, no rclpy.

- Host (DNS rebinding): a page of another site whose name was made to resolve to this machine
  sends its own name as Host. Only IP literals, `localhost`, this machine's host name (and
  `<name>.local`), the bound name and `allowed_hosts` are served.
- Origin (cross-site WebSocket hijacking): a browser names the page that opens a WebSocket or
  fetches; the data routes (websocket, state) refuse any Origin but the page's own
  (http(s)://<Host>). Clients that send no Origin (scripts, curl) are not browsers acting for
  another site, and pass.
- Token: when set, the page and the data routes need it (the scripts are public code), as
  `?token=` (the page's URL, printed once) or the cookie the page sets from it (HttpOnly,
  SameSite=Strict). Serving beyond loopback without one generates one.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

TOKEN_BYTES = 18
# Why a request was refused: the counter labels of the view's state.
REASONS = ('host', 'origin', 'token')
# What a route serves: public code (Host checked), the page (+ token) or data (+ Origin).
KINDS = ('static', 'page', 'data')


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the page on this machine."""
    if host.lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def effective_token(host: str, token: str) -> tuple[str, bool]:
    """Return (the token to require, whether it was generated): one is required off loopback."""
    if token or is_loopback(host):
        return token, False
    return secrets.token_urlsafe(TOKEN_BYTES), True


def host_name(host_header: str) -> str:
    """Return the host of a Host header ('name:port', '[v6]:port'), lower case, no port."""
    h = host_header.strip().lower()
    if h.startswith('['):
        return h[1:h.find(']')] if ']' in h else h[1:]
    return h.rsplit(':', 1)[0] if h.count(':') == 1 else h


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class AccessPolicy:
    """The checks of one view server; `refusal()` answers per request."""

    def __init__(self, bind_host: str, token: str = '', allowed_hosts=(), port: int = 0):
        self.token = token
        self.cookie = f'dpt_view_token_{port}'
        # Not getfqdn(): a DNS lookup that can stall start-up for seconds.
        me = socket.gethostname().lower()
        names = {'localhost', bind_host.lower(), me, f'{me}.local',
                 *(h.lower() for h in allowed_hosts)}
        self.names = frozenset(n for n in names if n and n != '.local')

    def set_port(self, port: int) -> None:
        """Name the token cookie after the bound port (a cookie is shared by every port)."""
        self.cookie = f'dpt_view_token_{port}'

    def host_ok(self, host_header: str | None) -> bool:
        """Whether a request naming `host_header` is for this server, not a rebound name."""
        if not host_header:
            return False
        name = host_name(host_header)
        return _is_ip(name) or name in self.names

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """Whether `origin` (absent = not a browser) is the page's own, http(s)://<Host>."""
        if origin is None:
            return True
        parts = urlsplit(origin.strip())
        return (parts.scheme in ('http', 'https') and bool(host_header)
                and parts.netloc.lower() == host_header.strip().lower())

    def token_ok(self, *offered: str | None) -> bool:
        """Whether one of the offered tokens (query, cookie) is the token; True without one."""
        if not self.token:
            return True
        want = self.token.encode()
        return any(t is not None and hmac.compare_digest(t.encode(), want) for t in offered)

    def refusal(self, kind: str, headers, query, cookies) -> str | None:
        """
        Return why a request for a route of `kind` (KINDS) must be refused, or None.

        Every route checks Host; 'page' and 'data' need the token; 'data' (the websocket and
        the state: camera images and diagnostics) also needs the page's own Origin.
        """
        host = headers.get('Host')
        if not self.host_ok(host):
            return 'host'
        if kind == 'data' and not self.origin_ok(headers.get('Origin'), host):
            return 'origin'
        if kind != 'static' and not self.token_ok(query.get('token'),
                                                  cookies.get(self.cookie)):
            return 'token'
        return None
