"""The coordinators' live web dashboard (``xregion dashboard``).

* :mod:`xregion.dashboard.app`    — the ASGI application (Starlette): page, JSON, SSE, health, metrics
* :mod:`xregion.dashboard.server` — uvicorn inside the coordinator's event loop
* :mod:`xregion.dashboard.run`    — the coordinator service and the dashboard together
"""
