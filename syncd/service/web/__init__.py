"""The HTTP service: one ASGI app (Starlette) on one server (uvicorn), serving the daemon's
hooks, /healthz and /metrics, the JSON API and the web page."""
