"""When the worker re-reads its detection file: on SIGHUP, and when a poll every
`worker.detection_file_check_seconds` sees its content change. What a reload does is
`service.runtime.detection_reload`; this module only triggers it, on the app's event loop (a
signal handler of the loop runs between two callbacks, so never in the middle of an event)."""

from __future__ import annotations

import signal

import faust

from service.core.pipeline import Pipeline
from service.runtime.detection_reload import DetectionReload
from service.runtime.metrics import Metrics
from service.settings import DetectionFile, Settings


def watch_detection_file(
    app: faust.App, settings: Settings, pipeline: Pipeline, metrics: Metrics
) -> DetectionReload | None:
    """Re-read the detection file on SIGHUP and on a change; without one, SIGHUP only says so
    (its default action would end the process)."""
    metrics.show_rules(pipeline.config.rule_versions, pipeline.config.modes)
    source = DetectionFile.of(settings)
    reload = DetectionReload(source, pipeline, metrics) if source is not None else None

    def on_sighup() -> None:
        if reload is None:
            app.log.warning("SIGHUP: no RECIPROCITY_DETECTION_FILE to re-read; nothing changed")
            return
        reload.reload("SIGHUP")

    @app.task  # type: ignore[untyped-decorator]
    async def reload_on_sighup() -> None:
        app.loop.add_signal_handler(signal.SIGHUP, on_sighup)
        if reload is not None:
            reload.started()

    if reload is not None:

        @app.timer(settings.worker.detection_file_check_seconds)  # type: ignore[untyped-decorator]
        async def reload_on_change() -> None:
            reload.check()

    return reload
