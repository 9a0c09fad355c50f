"""Authentication (token or basic auth) and CSRF protection for the dashboard's actions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from taskforge.dashboard.config import DashboardConfig, is_loopback

TOKEN_COOKIE = "taskforge_token"
CSRF_COOKIE = "taskforge_csrf"
#: The form field (or ``X-CSRF-Token`` header) every POST must carry.
CSRF_FIELD = "csrf"


class AuthMiddleware:
    """Pure ASGI middleware: every HTTP request must carry the token or basic credentials.

    A wrong or missing credential is answered ``401`` (with a basic-auth challenge when basic
    auth is configured). ``?token=`` on a GET sets an HttpOnly cookie holding a digest of the
    token and redirects to the same URL without it, so the token leaves the address bar.
    """

    def __init__(self, app: ASGIApp, config: DashboardConfig):
        self.app = app
        self.config = config
        self._token_digest = _digest(config.token) if config.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.config.has_auth:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self._token_digest and request.query_params.get("token"):
            await self._login(request)(scope, receive, send)
            return
        if self._allowed(request):
            await self.app(scope, receive, send)
            return
        headers = {"WWW-Authenticate": 'Basic realm="taskforge"'} if self.config.basic_auth else {}
        await PlainTextResponse("401 unauthorized", 401, headers)(scope, receive, send)

    def _login(self, request: Request) -> Response:
        given = request.query_params["token"]
        if not self._token_digest or not hmac.compare_digest(_digest(given), self._token_digest):
            return PlainTextResponse("401 unauthorized: wrong token", 401)
        rest = {k: v for k, v in request.query_params.items() if k != "token"}
        url = (
            request.url.replace_query_params(**rest)
            if rest
            else request.url.remove_query_params("token")
        )
        response = RedirectResponse(str(url), 303)
        path = request.scope.get("root_path") or "/"
        response.set_cookie(TOKEN_COOKIE, self._token_digest, httponly=True, samesite="strict",
                            path=path)  # fmt: skip
        return response

    def _allowed(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self._token_digest:
            if scheme.lower() == "bearer" and hmac.compare_digest(
                _digest(value), self._token_digest
            ):
                return True
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            if cookie and hmac.compare_digest(cookie, self._token_digest):
                return True
        if self.config.basic_auth and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value).decode()
            except ValueError:
                return False
            return hmac.compare_digest(given.encode(), self.config.basic_auth.encode())
        return False


class LoopbackHostsOnly:
    """Pure ASGI middleware for a dashboard without authentication (so on a loopback address):
    refuse, with ``403``, any request whose ``Host`` header is not a loopback name.

    Binding to 127.0.0.1 keeps other machines out but not other sites: a page the operator
    opens elsewhere can point its own host name at 127.0.0.1 (DNS rebinding) and then read the
    dashboard, CSRF field included, as a page of its own origin, and post its actions. Such a
    request carries the attacker's host name in ``Host``; a browser's request to the dashboard
    itself carries ``localhost``, ``127.x.x.x`` or ``[::1]``.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not _loopback_host(scope):
            await PlainTextResponse(
                "403 forbidden: this dashboard has no authentication, so it answers only to "
                "localhost, 127.0.0.1 or [::1] in the address (set a token to use another name)",
                403,
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _loopback_host(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):  # [::1]:8700
                host = host[1 : host.find("]")] if "]" in host else host
            else:
                host = host.rpartition(":")[0] if host.count(":") == 1 else host
            return is_loopback(host)
    return True  # HTTP/1.0 without Host: not a browser following a rebound name


def _digest(token: str) -> str:
    return hashlib.sha256(b"taskforge-dashboard:" + token.encode()).hexdigest()


class Csrf:
    """Signed double-submit tokens: a random cookie, and a form field that must be its HMAC.

    A page from another site can make the browser send the cookie, but cannot read it to build
    the matching field; the key is random per dashboard process.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The visitor's nonce, and whether it is new (to be set on the response)."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if nonce and len(nonce) == 32:
            return nonce, False
        return secrets.token_hex(16), True

    def token(self, nonce: str) -> str:
        """The form field value that goes with ``nonce``."""
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, request: Request, field: str | None) -> bool:
        """Whether a POST carries a field matching its cookie."""
        nonce = request.cookies.get(CSRF_COOKIE)
        given = field or request.headers.get("x-csrf-token")
        return bool(nonce and given and hmac.compare_digest(given, self.token(nonce)))


__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "AuthMiddleware", "Csrf", "LoopbackHostsOnly"]
