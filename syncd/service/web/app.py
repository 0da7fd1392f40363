"""The service's one ASGI app: what `syncd serve` and `syncd daemon --listen` answer.

    GET  /healthz, /metrics     health (200 / 503) and Prometheus text; no token needed
    POST /hooks/...             push deliveries of bucket events (daemon only; hook token)
    /api/v1/...                 the JSON API (web token)
    /, /login, /static/...      the web page (web token, through a login cookie)
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .hooks import Hooks

Health = Callable[[], tuple[bool, dict]]


def build_app(*, health: Health, metrics, hooks: Hooks | None = None, web=None) -> Starlette:
    """`web` (a syncd.service.web.site.Site) adds the API and the page; `hooks` the push hooks."""

    async def healthz(request: Request) -> Response:
        ok, detail = health()
        return JSONResponse(detail, 200 if ok else 503)

    async def metrics_text(request: Request) -> Response:
        from ..metrics import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    routes = [Route("/healthz", healthz), Route("/metrics", metrics_text)]
    if hooks is not None:
        routes += hooks.routes()
    if web is not None:
        routes += web.routes()
    app = Starlette(routes=routes, exception_handlers=web.exception_handlers() if web else None)
    if web is not None:
        return web.wrap(app)
    return app
