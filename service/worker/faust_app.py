"""For `faust -A service.worker.faust_app worker`: the app is built from the environment on
first access, not at import."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    from service.settings import settings_from_environment
    from service.worker.app import create_app

    app = create_app(settings_from_environment())
    globals()["app"] = app
    return app
