"""The guard in front of the page and the JSON API (ASGI middleware): authentication (the
Bearer token or the login cookie), CSRF for writes the page's cookie authenticates, and
read-only servers refusing every write. See site.py for the rules."""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

COOKIE = "syncd_session"
WRITES = {"POST", "PATCH", "PUT", "DELETE"}
GUARDED = ("/", "/logout")  # with everything under /api/; the rest holds no data


class Guard:
    """ASGI middleware: authentication, CSRF and read-only checks."""

    def __init__(self, app, site):
        self.app = app
        self.site = site

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path not in GUARDED and not path.startswith("/api/"):
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        how = self.site.authenticate(request)
        api = path.startswith("/api/")
        if how is None:
            if api:
                response = JSONResponse({"error": "missing or wrong token"}, 401,
                                        headers={"WWW-Authenticate": "Bearer"})
            else:
                response = RedirectResponse("/login?next=" + quote(path, safe="/"), 303)
            return await response(scope, receive, send)
        if scope["method"] in WRITES and path != "/logout":
            refusal = None
            if self.site.read_only:
                refusal = "read-only: this server serves no write action"
            elif how == "cookie" and (
                    not hmac.compare_digest(request.headers.get("x-csrf-token", "").encode(),
                                            self.site.csrf.encode())
                    or request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")):
                refusal = "a write from the page needs its X-CSRF-Token, from the same site"
            if refusal:
                return await JSONResponse({"error": refusal}, 403)(scope, receive, send)
        await self.app(scope, receive, send)
