"""The JSON API and the web page; the one guard in front of both is in guard.py.

Auth: nothing here is served without the web token (`[web] token`, else `[daemon]
hook_token`): as `Authorization: Bearer TOKEN`, or through the login form, which sets an
HttpOnly, SameSite=Strict cookie holding a value derived from the token (not the token).
Writes (POST, PATCH) authenticated by the cookie must also carry `X-CSRF-Token` (the page
reads it from its own HTML, which another site cannot) and must not come from another site
(`Sec-Fetch-Site`); with `read_only` no write is served at all. The JS, CSS and the login
form itself need no token; /healthz, /metrics and /hooks/ are guarded as before (the hooks by
the hook token).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import mimetypes
import contextlib
import functools
import queue
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from drivers import DriverError

from ...app import App
from ...catalogue import browse
from ...catalogue.query import compile_query, filename_bounds, folder_bounds
from ...errors import ConfigError, InputError, NotFoundError, SyncdError
from ... import usermeta
from .hooks import bearer, same_secret
from .guard import COOKIE, Guard
from .http import BodyError, decode_cursor, encode_cursor, error_response, read_body, read_json
from .media import serve_object

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
POOL = 8  # Apps (catalogue connections) shared by the requests in flight
THUMBNAIL_CACHE = "private, max-age=31536000, immutable"  # a versioned URL (?v=) never changes


def web_token(config) -> str | None:
    return config.web_token()


def _version(system: dict, field: str) -> str:
    """A version for an artifact's URL: it changes whenever preprocessing runs again."""
    return hashlib.sha256(f"{system[field]}|{system.get('etag')}|"
                          f"{(system.get('etl') or {}).get('at')}".encode()).hexdigest()[:16]


def _leased(method):
    """Run a (threadpool) endpoint holding one of the Site's pooled Apps."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lease():
            return method(self, *args, **kwargs)

    return wrapper


class Site:
    """The API and the page over one config. A catalogue connection (an App) per thread."""

    def __init__(self, config, *, read_only: bool | None = None, run_jobs_after_sync: bool = True):
        token = web_token(config)
        if not token:
            raise ConfigError(f"{config.source}: web.token: missing: the web page and API need a "
                              f"token ([web] token, or [daemon] hook_token)")
        self.config = config
        self.token = token.encode()
        self.session = hmac.new(self.token, b"syncd-session", hashlib.sha256).hexdigest()
        self.csrf = hmac.new(self.token, b"syncd-csrf", hashlib.sha256).hexdigest()
        self.read_only = config.web.read_only if read_only is None else read_only
        self.run_jobs_after_sync = run_jobs_after_sync
        self._local = threading.local()
        self._apps: list[App] = []
        self._idle: queue.LifoQueue[App] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._syncs: dict[str, threading.Thread] = {}

    # -- plumbing -------------------------------------------------------------------------

    @property
    def app(self) -> App:
        """The App (catalogue connection, drivers) this thread holds for its request."""
        app = getattr(self._local, "app", None)
        if app is None:
            raise RuntimeError("Site.app outside a request: use `with site.lease()`")
        return app

    @contextlib.contextmanager
    def lease(self):
        """Hold one of at most POOL Apps for a request: connections (and their page caches)
        stay bounded however many threads serve requests."""
        if getattr(self._local, "app", None) is not None:  # nested: already held
            yield self._local.app
            return
        try:
            app = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                app = App(self.config) if len(self._apps) < POOL else None
                if app is not None:
                    self._apps.append(app)
            if app is None:
                app = self._idle.get()
        self._local.app = app
        try:
            yield app
        finally:
            self._local.app = None
            self._idle.put(app)

    def close(self) -> None:
        with self._lock:
            for app in self._apps:
                app.close()
            self._apps.clear()

    def exception_handlers(self) -> dict:
        return {SyncdError: error_response, DriverError: error_response}

    def wrap(self, asgi_app):
        return Guard(asgi_app, self)

    def authenticate(self, request: Request) -> str | None:
        """'bearer', 'cookie', or None."""
        given = bearer(request)
        if given and same_secret(given, self.token):
            return "bearer"
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return "cookie"
        return None

    def routes(self) -> list:
        api = "/api/v1"
        return [
            Route("/", self.page),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route(f"{api}/status", self.api_status),
            Route(f"{api}/datasets", self.api_datasets),
            Route(f"{api}/datasets/{{name}}", self.api_dataset),
            Route(f"{api}/datasets/{{name}}/items", self.api_items),
            Route(f"{api}/datasets/{{name}}/folders", self.api_folders),
            Route(f"{api}/datasets/{{name}}/errors", self.api_errors),
            Route(f"{api}/datasets/{{name}}/sync", self.api_sync, methods=["POST"]),
            Route(f"{api}/items/{{id}}", self.api_item, methods=["GET", "PATCH"]),
            Route(f"{api}/items/{{id}}/thumbnail", self.api_thumbnail),
            Route(f"{api}/items/{{id}}/stream", self.api_stream),
            Route(f"{api}/items/{{id}}/preview", self.api_preview),
            Route(f"{api}/jobs", self.api_jobs),
            Route(f"{api}/jobs/retry", self.api_retry_failed, methods=["POST"]),
            Route(f"{api}/jobs/{{id:int}}/retry", self.api_retry, methods=["POST"]),
        ]

    # -- the page -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        text = (STATIC / "index.html").read_text(encoding="utf-8")
        text = text.replace("{{csrf}}", self.csrf).replace(
            "{{read_only}}", "true" if self.read_only else "false")
        return HTMLResponse(text, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": _CSP,
                                           "X-Frame-Options": "DENY"})

    async def login(self, request: Request) -> Response:
        target = request.query_params.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        error = ""
        if request.method == "POST":
            try:
                body = await read_body(request, max_bytes=4096, timeout=10)
            except BodyError as failure:
                return Response(str(failure), failure.status)
            from urllib.parse import parse_qs

            form = parse_qs(body.decode("utf-8", "replace"))
            if same_secret(form.get("token", [""])[0], self.token):
                response = RedirectResponse(target, 303)
                response.set_cookie(COOKIE, self.session, httponly=True, samesite="strict",
                                    secure=request.url.scheme == "https", path="/")
                return response
            log.warning("web: a login with a wrong token")
            error = '<p class="error" role="alert">Wrong token.</p>'
        text = (STATIC / "login.html").read_text(encoding="utf-8")
        text = text.replace("{{error}}", error).replace("{{next}}", html.escape(quote(target, safe="/?=&#")))
        return HTMLResponse(text, 401 if error else 200,
                            headers={"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"})

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- helpers --------------------------------------------------------------------------

    def _dataset(self, name: str):
        names = [d.name for d in self.config.datasets]
        if name not in names:
            raise NotFoundError(f"no dataset named {name!r} (datasets: {', '.join(names) or 'none'})")
        return self.app.dataset(name)

    def decorate(self, request: Request, item: dict[str, Any], dataset) -> dict[str, Any]:
        """The item JSON with the fields the reference SDK reads: datasetId, url, stream,
        thumbnail (absolute URLs)."""
        base = str(request.base_url).rstrip("/")
        url = f"{base}/api/v1/items/{item['id']}"
        system = item["metadata"]["system"]
        thumbnail = None
        if system.get("thumbnailId"):
            thumbnail = f"{url}/thumbnail?v={_version(system, 'thumbnailId')}"
        preview = f"{url}/preview?v={_version(system, 'previewId')}" if system.get("previewId") else None
        return {**item, "datasetId": browse.dataset_id(self.app.catalogue, dataset), "url": url,
                "stream": f"{url}/stream", "thumbnail": thumbnail, "preview": preview}

    def _item(self, item_id: str):
        catalogue = self.app.catalogue
        row = catalogue.item_row_by_pk(catalogue.item_pk(item_id))
        if row is None:
            raise NotFoundError(f"no item with id {item_id!r}")
        dataset = self._dataset(browse.dataset_name(catalogue, row["dataset_id"]))
        return row, dataset

    # -- API: reads -----------------------------------------------------------------------

    @_leased
    def api_status(self, request: Request) -> Response:
        return JSONResponse([self._status(d.name) for d in self.config.datasets])

    def _status(self, name: str, *, mimetypes: bool = True) -> dict:
        status = browse.status(self.app.catalogue, self._dataset(name), mimetypes=mimetypes)
        status["syncRunning"] = name in self._syncs and self._syncs[name].is_alive()
        return status

    @_leased
    def api_datasets(self, request: Request) -> Response:
        return JSONResponse([self._status(d.name, mimetypes=False) for d in self.config.datasets])

    @_leased
    def api_dataset(self, request: Request) -> Response:
        return JSONResponse(self._status(request.path_params["name"]))

    @_leased
    def api_items(self, request: Request) -> Response:
        started, cpu = time.perf_counter(), time.thread_time()
        dataset = self._dataset(request.path_params["name"])
        params = request.query_params
        queries = [q for q in params.getlist("where") if q.strip()]
        condition = compile_query(queries) if queries else None
        bounds = filename_bounds(queries) if queries else None
        folder = params.get("folder", "").strip()
        if folder and folder != "/":
            low, high = folder_bounds(folder)
            if bounds is not None:
                low = max(low, bounds[0])
                high = high if bounds[1] is None else min(high, bounds[1])
            bounds = (low, high)
        try:
            limit = int(params.get("limit", "100"))
        except ValueError:
            raise InputError(f"limit {params.get('limit')!r}: expected a number") from None
        after = decode_cursor(params.get("cursor", ""))
        items, last = browse.page(self.app.catalogue, dataset, where=condition, after=after,
                                  limit=limit, present_only=params.get("state") == "present",
                                  bounds=bounds)
        response = JSONResponse({
            "items": [self.decorate(request, item, dataset) for item in items],
            "next": encode_cursor(last) if last is not None else None,
        })
        # The server's own time for the page (wall, and CPU of this thread), for benchmarks
        # and browsers' developer tools.
        response.headers["Server-Timing"] = (f"app;dur={(time.perf_counter() - started) * 1000:.2f}, "
                                             f"cpu;dur={(time.thread_time() - cpu) * 1000:.2f}")
        return response

    @_leased
    def api_folders(self, request: Request) -> Response:
        dataset = self._dataset(request.path_params["name"])
        parent = request.query_params.get("parent", "/")
        return JSONResponse({"parent": parent,
                             "folders": browse.folders(self.app.catalogue, dataset, parent)})

    @_leased
    def api_errors(self, request: Request) -> Response:
        dataset = self._dataset(request.path_params["name"])
        return JSONResponse(browse.listing_errors(self.app.catalogue, dataset, limit=1000))

    @_leased
    def api_jobs(self, request: Request) -> Response:
        params = request.query_params
        states = tuple(s for s in params.getlist("state") if s)
        names = [d for d in params.getlist("dataset") if d]
        ids = [self._dataset(n).id for n in names] or None
        limit = min(int(params.get("limit", "200")), 1000)
        rows = []
        for row in self.app.jobs().rows(states=states, datasets=ids):
            rows.append(row)
            if len(rows) >= limit:
                break
        return JSONResponse(rows)

    async def api_item(self, request: Request) -> Response:
        if request.method == "PATCH":
            body = await read_json(request)
            return await run_in_threadpool(self._patch, request, body)
        return await run_in_threadpool(self._get_item, request)

    @_leased
    def _get_item(self, request: Request) -> Response:
        row, dataset = self._item(request.path_params["id"])
        catalogue = self.app.catalogue
        item = catalogue.item_json(dataset, row)
        result = self.decorate(request, item, dataset)
        result["jobs"] = browse.item_jobs(catalogue, row["pk"])
        return JSONResponse(result)

    @_leased
    def api_thumbnail(self, request: Request) -> Response:
        return self._artifact(request, "thumbnailId", "thumbnail")

    @_leased
    def api_preview(self, request: Request) -> Response:
        return self._artifact(request, "previewId", "video preview")

    def _artifact(self, request: Request, field: str, what: str) -> Response:
        """One of syncd's own files under .dataloop/ for the item (its thumbnail, its video
        preview): long-cached under its versioned URL, in ranges."""
        row, dataset = self._item(request.path_params["id"])
        system = json.loads(row["system"]) if row["system"] else {}
        key = system.get(field)
        if not key:
            raise NotFoundError(f"item {request.path_params['id']} has no {what} (yet)")
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        cache = THUMBNAIL_CACHE if request.query_params.get("v") else "private, no-cache"
        return serve_object(request, self.app.dataset_driver(dataset.name), key,
                            content_type=content_type, cache_control=cache,
                            presign_seconds=self._presign())

    @_leased
    def api_stream(self, request: Request) -> Response:
        row, dataset = self._item(request.path_params["id"])
        system = json.loads(row["system"]) if row["system"] else {}
        if row["type"] == "link":
            ref = ((system.get("shebang") or {}).get("linkInfo") or {}).get("ref")
            if not ref:
                raise NotFoundError(f"linked item {request.path_params['id']} has no URL")
            return RedirectResponse(ref, 307)
        return serve_object(request, self.app.dataset_driver(dataset.name), row["filename"].lstrip("/"),
                            content_type=system.get("mimetype") or "application/octet-stream",
                            cache_control="private, no-cache", presign_seconds=self._presign())

    def _presign(self) -> int | None:
        return self.config.web.presign_seconds if self.config.web.presign else None

    # -- API: writes ----------------------------------------------------------------------

    @_leased
    def _patch(self, request: Request, body: dict) -> Response:
        row, dataset = self._item(request.path_params["id"])
        replace = request.query_params.get("replace") in ("1", "true")
        values = body.get("metadata", {}).get("user") if isinstance(body.get("metadata"), dict) else body.get("user")
        if not isinstance(values, dict):
            raise InputError('PATCH body: expected {"metadata": {"user": {...}}}')
        usermeta.set_user_metadata(self.app.catalogue, dataset, [(row["filename"], values)], replace=replace)
        item = self.app.catalogue.get_item(dataset, row["filename"])
        return JSONResponse(self.decorate(request, item, dataset))

    @_leased
    def api_sync(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._dataset(name)
        with self._lock:
            running = self._syncs.get(name)
            if running is not None and running.is_alive():
                return JSONResponse({"dataset": name, "started": False,
                                     "error": "a sync of this dataset is running"}, 409)
            thread = threading.Thread(target=self._sync, args=(name,), name=f"web-sync-{name}",
                                      daemon=True)
            self._syncs[name] = thread
            thread.start()
        return JSONResponse({"dataset": name, "started": True}, 202)

    def _sync(self, name: str) -> None:
        try:
            with App(self.config) as app:
                result = app.sync(name)
                log.info("web: synced %s: %s", name, result.as_json())
                if self.run_jobs_after_sync and self.config.preprocess.enabled:
                    app.run_jobs([name])
        except (SyncdError, DriverError) as error:
            log.warning("web: sync of %s failed: %s", name, error)

    @_leased
    def api_retry(self, request: Request) -> Response:
        count = self.app.jobs().requeue(states=(), ids=[request.path_params["id"]])
        return JSONResponse({"requeued": count})

    @_leased
    def api_retry_failed(self, request: Request) -> Response:
        names = [d for d in request.query_params.getlist("dataset") if d]
        ids = [self._dataset(n).id for n in names] or None
        return JSONResponse({"requeued": self.app.jobs().requeue(states=("failed",), datasets=ids)})


_CSP = ("default-src 'self'; img-src 'self' blob: data: https: http:; media-src 'self' https: http:; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
