"""Detection settings changed while the worker runs: the detection file re-read on demand
(SIGHUP) or when its content changes, and applied whole to the next event, or not at all.

A valid file becomes the pipeline's config, which every stage reads once per event; the rules
whose section changed get a new `rule_version` (modes are not part of it: a mode says where an
alert goes, not what it is). An invalid file is refused in one log line naming the file and the
field, the running settings stay, and `reciprocity_config_reload_failures_total` counts it.
The worker adapter decides when to call; this class holds no timer and no signal handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from service.core.pipeline import Pipeline
from service.runtime.metrics import Metrics
from service.settings import (
    ConfigurationError,
    DetectionFile,
    LoadedDetection,
    content_digest,
    restart_only_fields,
)

log = logging.getLogger(__name__)


class DetectionReload:
    def __init__(self, source: DetectionFile, pipeline: Pipeline, metrics: Metrics) -> None:
        self.source = source
        self._pipeline = pipeline
        self._metrics = metrics
        # The digest of the content last looked at, valid or not (None: unreadable, or not yet
        # read): the poll acts on a change of content only, so an invalid file is refused and
        # counted once, not at every poll.
        self._seen: str | None = None
        metrics.show_rules(pipeline.config.rule_versions, pipeline.config.modes)

    def started(self) -> None:
        """The pipeline was built from the file: remember its content, and say which variables
        it overrides (or apply it, if it changed since the settings were read)."""
        try:
            loaded = self.source.read()
        except ConfigurationError as exc:
            self._refuse(exc)
            return
        if loaded.settings != self._pipeline.config.settings:
            self._apply(loaded, "changed since the start")
            return
        self._seen = loaded.digest
        self._warn_shadowed(loaded)

    def check(self) -> bool:
        """The poll: reload if the file's content differs from what was last looked at.
        Reads the content (through the symlink a ConfigMap volume swaps), not only its
        modification time or inode. Returns whether a new config was applied."""
        try:
            content = self.source.read_bytes()
        except ConfigurationError as exc:
            if self._seen is not None:  # it was readable: say so once
                self._seen = None
                self._refuse(exc)
            return False
        try:
            loaded = self.source.parse(content)
        except ConfigurationError as exc:
            digest = content_digest(content)
            if digest != self._seen:
                self._seen = digest
                self._refuse(exc)
            return False
        if loaded.digest == self._seen:
            return False
        return self._apply(loaded, "the file changed")

    def reload(self, trigger: str) -> bool:
        """Re-read now (SIGHUP), whatever the content. Returns whether it was applied."""
        try:
            loaded = self.source.read()
        except ConfigurationError as exc:
            self._refuse(exc)
            return False
        return self._apply(loaded, trigger)

    def _apply(self, loaded: LoadedDetection, trigger: str) -> bool:
        self._seen = loaded.digest
        running = self._pipeline.config
        restart_only = restart_only_fields(running.settings, loaded.settings)
        if restart_only:
            self._refuse(
                ConfigurationError(
                    f"{self.source.path}: {', '.join(restart_only)}: takes effect only when the "
                    "worker starts (it shapes stored state, or is the first quota: the quota "
                    "stage is built at the start); restart it to change it"
                )
            )
            return False
        before_versions, before_modes = dict(running.rule_versions), dict(running.modes)
        self._pipeline.reconfigure(loaded.settings)
        after = self._pipeline.config
        self._metrics.config_reloads.inc()
        self._metrics.show_rules(after.rule_versions, after.modes)
        changes = _changes(before_versions, before_modes, after.rule_versions, after.modes)
        log.info(f"detection file {self.source.path} reloaded ({trigger}): {changes}")
        self._warn_shadowed(loaded)
        return True

    def _refuse(self, exc: ConfigurationError) -> None:
        self._metrics.config_reload_failures.inc()
        # Formatted here: the worker's filter of repeated lines keys on the template, and each
        # refusal, with its own reason, must get through.
        log.error(f"detection file refused, running settings kept: {exc}")

    def _warn_shadowed(self, loaded: LoadedDetection) -> None:
        if loaded.shadowed:
            log.warning(
                f"detection file {self.source.path} overrides {', '.join(loaded.shadowed)}: "
                "the file wins while it sets them"
            )


def _changes(
    versions: Mapping[str, str],
    modes: Mapping[str, str],
    new_versions: Mapping[str, str],
    new_modes: Mapping[str, str],
) -> str:
    changed = []
    for rule, version in new_versions.items():
        parts = []
        if versions.get(rule) != version:
            parts.append(f"{versions.get(rule)} -> {version}")
        if modes.get(rule) != new_modes[rule]:
            parts.append(f"{modes.get(rule)} -> {new_modes[rule]}")
        if parts:
            changed.append(f"{rule} {', '.join(parts)}")
    return "; ".join(changed) if changed else "no rule changed"
