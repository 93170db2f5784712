"""`reciprocity`: the one command line of the service."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, get_args

import click
import orjson
from rich.console import Console
from rich.table import Table

from service.core.backtest import RuleComparison, SettingsComparison
from service.core.decoding import EventDecoder, Rejection
from service.core.models import BREAKER_RULE, Alert, Rule, ShadowAlert
from service.core.replay import Replayer
from service.core.rule_quota import Quota
from service.settings import (
    ConfigurationError,
    Settings,
    settings_from_environment,
    settings_over_environment,
)


def tune_gc() -> None:
    """State is millions of small long-lived lists; the default collector thresholds make full
    collections walk them over and over (measured: a third of replay time). Cycles are rare
    here, so collect far less often."""
    gc.freeze()
    gc.set_threshold(200_000, 50, 1_000)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def load_settings() -> Settings:
    """Settings from the environment, or exit naming every bad variable."""
    try:
        return settings_from_environment()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="reciprocity")
def main() -> None:
    """Reciprocity: social-spam detection over follow, retweet, reply and mention streams."""


@main.command(short_help="Detect over a JSON Lines file or stdin, no Kafka.")
@click.argument("source", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--profile",
    "profile_ids",
    multiple=True,
    metavar="USER_ID",
    help="Print this account's reciprocity profile at the end (repeatable).",
)
@click.option("--quiet", is_flag=True, help="No summary on stderr.")
@click.option(
    "--include-shadow",
    is_flag=True,
    help='Also print the alerts of rules in shadow mode, each with "mode": "shadow" '
    "(RECIPROCITY_DETECTION__<RULE>__MODE=shadow; the summary counts them either way).",
)
@click.option(
    "--compare-settings",
    "other_settings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="OTHER",
    help="Backtest a settings change: run the current settings (old) and OTHER layered over "
    "them (new; a .env file of RECIPROCITY_* lines, or a .json, .yaml or .yml file shaped like "
    "the settings) over the input in one pass, and print per rule the alerts only one of them "
    "raises.",
)
@click.option(
    "--compare-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="With --compare-settings: write every alert of each side to DIR/old.jsonl and "
    "DIR/new.jsonl.",
)
def replay(
    source: str,
    profile_ids: tuple[str, ...],
    quiet: bool,
    include_shadow: bool,
    other_settings: Path | None,
    compare_out: Path | None,
) -> None:
    """Run the detectors over a JSON Lines file (or - for stdin), no Kafka.

    Alerts go to stdout as JSON Lines; rejected lines, a per-rule summary and any requested
    profiles go to stderr. With --compare-settings, stdout gets the comparison instead (a
    table on a terminal, plain lines otherwise), shadow alerts included and marked.
    """
    settings = load_settings()
    if other_settings is None:
        if compare_out is not None:
            raise click.UsageError("--compare-out goes with --compare-settings")
        _replay(source, settings, profile_ids, quiet, include_shadow)
        return
    if profile_ids:
        raise click.UsageError("--profile goes with a replay, not with --compare-settings")
    try:
        new = settings_over_environment(other_settings)
    except ConfigurationError as exc:
        raise click.ClickException(f"--compare-settings {exc}") from None
    _compare(source, settings, new, compare_out, quiet)


def _replay(
    source: str,
    settings: Settings,
    profile_ids: tuple[str, ...],
    quiet: bool,
    include_shadow: bool,
) -> None:
    tune_gc()
    err = Console(stderr=True)
    decoder = EventDecoder(settings.input, wall_clock_ms)
    replayer = Replayer(settings.detection, wall_clock_ms, include_shadow=include_shadow)
    rejected: dict[str, int] = {}
    out = sys.stdout.buffer
    started = time.perf_counter()
    lines = 0
    with _open_source(source) as stream:
        for number, line in _numbered_lines(stream, err, source):
            lines += 1
            decoded = decoder.decode(line)
            if isinstance(decoded, Rejection):
                _report_rejection(err, number, decoded, rejected)
                continue
            for alert in replayer.submit(decoded):
                out.write(orjson.dumps(alert.model_dump(mode="json")) + b"\n")
    for alert in replayer.flush():
        out.write(orjson.dumps(alert.model_dump(mode="json")) + b"\n")
    out.flush()
    elapsed = time.perf_counter() - started
    if not quiet:
        _print_summary(err, replayer, rejected, lines, elapsed, include_shadow)
    for account_id in profile_ids:
        err.print_json(orjson.dumps(replayer.profile(account_id)).decode())


class _open_source:
    def __init__(self, source: str) -> None:
        self._source = source
        self._file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if self._source == "-":
            return sys.stdin.buffer
        self._file = open(self._source, "rb")
        return self._file

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()


def _numbered_lines(stream: BinaryIO, err: Console, source: str) -> Iterator[tuple[int, bytes]]:
    if not err.is_terminal:
        for number, line in enumerate(stream, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line
        return
    from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

    total = os.path.getsize(source) if source != "-" else None
    columns = (
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} B"),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        for number, line in enumerate(stream, 1):
            if number % 2048 == 0:
                progress.update(task, advance=0, completed=stream.tell() if total else None)
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def _report_rejection(
    err: Console, number: int, rejection: Rejection, counts: dict[str, int]
) -> None:
    counts[rejection.code] = counts.get(rejection.code, 0) + 1
    err.print(
        f"line {number}: {rejection.code}: {rejection.message}", markup=False, highlight=False
    )


def _compare(source: str, old: Settings, new: Settings, out_dir: Path | None, quiet: bool) -> None:
    tune_gc()
    err = Console(stderr=True)
    comparison = SettingsComparison(old.detection, new.detection, wall_clock_ms)
    old_decoder = EventDecoder(old.input, wall_clock_ms)
    # Input settings decide what is rejected: decode again only when they differ.
    new_decoder = None if new.input == old.input else EventDecoder(new.input, wall_clock_ms)
    rejected: dict[str, int] = {}
    rejected_new: dict[str, int] = {}
    started = time.perf_counter()
    lines = 0
    with _open_source(source) as stream:
        for number, line in _numbered_lines(stream, err, source):
            lines += 1
            decoded = old_decoder.decode(line)
            if isinstance(decoded, Rejection):
                _report_rejection(err, number, decoded, rejected)
            old_event = None if isinstance(decoded, Rejection) else decoded
            new_event = old_event
            if new_decoder is not None:
                decoded_new = new_decoder.decode(line)
                if isinstance(decoded_new, Rejection):
                    rejected_new[decoded_new.code] = rejected_new.get(decoded_new.code, 0) + 1
                    new_event = None
                else:
                    new_event = decoded_new
            comparison.submit(old_event, new_event)
    rules = comparison.finish()
    elapsed = time.perf_counter() - started
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, alerts in (("old", comparison.old_alerts), ("new", comparison.new_alerts)):
            (out_dir / f"{name}.jsonl").write_bytes(
                b"".join(orjson.dumps(alert.model_dump(mode="json")) + b"\n" for alert in alerts)
            )
    out = Console(highlight=False, soft_wrap=True)
    old_config, new_config = comparison.old.pipeline.config, comparison.new.pipeline.config
    headings = {
        rule.rule: _comparison_heading(
            rule,
            (_rule_version(comparison.old, rule.rule), _rule_version(comparison.new, rule.rule)),
            (_mode(old_config.modes, rule.rule), _mode(new_config.modes, rule.rule)),
        )
        for rule in rules
    }
    if out.is_terminal:
        _print_comparison_tables(out, rules, headings)
    else:
        _print_comparison_lines(rules, headings)
    if not quiet:
        rate = lines / elapsed if elapsed > 0 else 0.0
        refused = f"{sum(rejected.values()):,} rejected"
        if new_decoder is not None:
            refused += f" ({sum(rejected_new.values()):,} with the new input settings)"
        err.print(
            f"{lines:,} lines in {elapsed:.2f} s ({rate:,.0f} lines/s) through both settings: "
            f"{len(comparison.old_alerts):,} alerts old, {len(comparison.new_alerts):,} new; "
            f"{refused}.",
            highlight=False,
            soft_wrap=True,
        )


def _rule_version(replayer: Replayer, rule: str) -> str:
    """A detection rule's version; the breaker's is one per rule it watches, so none here."""
    return replayer.pipeline.config.rule_versions.get(rule, "breaker")


def _mode(modes: Mapping[str, str], rule: str) -> str:
    return modes.get(rule, "enforce")  # the breaker's trips are always enforced


def _comparison_heading(
    rule: RuleComparison, versions: tuple[str, str], modes: tuple[str, str]
) -> str:
    version = versions[0] if versions[0] == versions[1] else f"{versions[0]} -> {versions[1]}"
    mode = modes[0] if modes[0] == modes[1] else f"{modes[0]} -> {modes[1]}"
    return (
        f"{rule.rule} ({version}, {mode}): {rule.old} old, {rule.new} new; "
        f"{rule.same + rule.moved} in both ({rule.moved} raised at another time); "
        f"{len(rule.only_new)} only new, {len(rule.only_old)} only old"
    )


def _difference_fields(alert: Alert) -> tuple[str, str, str, str, str]:
    mode = "shadow" if isinstance(alert, ShadowAlert) else "enforce"
    return alert.severity.value, alert.subject_id, alert.window_start, alert.window_end, mode


def _print_comparison_lines(rules: list[RuleComparison], headings: dict[str, str]) -> None:
    """One line per rule, then one per alert raised by one side only, `+` new, `-` old:
    `+ RULE SEVERITY SUBJECT WINDOW_START/WINDOW_END MODE`."""
    lines = []
    for rule in rules:
        lines.append(headings[rule.rule])
        for sign, alerts in (("+", rule.only_new), ("-", rule.only_old)):
            for alert in alerts:
                severity, subject, start, end, mode = _difference_fields(alert)
                lines.append(f"{sign} {rule.rule} {severity} {subject} {start}/{end} {mode}")
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def _print_comparison_tables(
    out: Console, rules: list[RuleComparison], headings: dict[str, str]
) -> None:
    for rule in rules:
        if not (rule.only_new or rule.only_old):
            out.print(headings[rule.rule])
            continue
        table = Table(title=headings[rule.rule], title_justify="left")
        for column in ("", "severity", "subject", "window start", "window end", "mode"):
            table.add_column(column)
        for sign, style, alerts in (
            ("only new", "green", rule.only_new),
            ("only old", "red", rule.only_old),
        ):
            for alert in alerts:
                table.add_row(sign, *_difference_fields(alert), style=style)
        out.print(table)


SEVERITIES = ("low", "medium", "high")


def _quota_text(quota: Quota | None) -> str:
    """`5/h 20/d`, `5/h`, or `-` for none."""
    if quota is None:
        return "-"
    hour = f"{quota.per_hour}/h" if quota.per_hour else ""
    day = f"{quota.per_day}/d" if quota.per_day else ""
    return " ".join(part for part in (hour, day) if part)


def _print_summary(
    err: Console,
    replayer: Replayer,
    rejected: dict[str, int],
    lines: int,
    elapsed: float,
    include_shadow: bool,
) -> None:
    stats = replayer.stats
    processed = sum(stats.events_by_type.values())
    rate = lines / elapsed if elapsed > 0 else 0.0
    shadow = sum(stats.shadow_alerts.values())
    diverted = sum(stats.diverted.values())
    shadow_note = ""
    if shadow:
        printed = "printed, marked" if include_shadow else "not printed: --include-shadow"
        shadow_note = f" {shadow:,} shadow alerts ({printed})."
        if diverted:
            shadow_note += f" {diverted:,} of them diverted past a rule's quota."
    err.print(
        f"{lines:,} lines in {elapsed:.2f} s ({rate:,.0f} lines/s): {processed:,} events counted, "
        f"{stats.outcomes.get('duplicate', 0):,} duplicates, {stats.outcomes.get('late', 0):,} "
        f"late, {sum(rejected.values()):,} rejected; {stats.suppressed:,} repeat alerts "
        f"suppressed inside open episodes.{shadow_note}",
        highlight=False,
        soft_wrap=True,
    )
    modes = replayer.pipeline.config.modes
    quotas = replayer.quotas.quotas
    table = Table(title="alerts by rule", title_justify="left")
    table.add_column("rule")
    table.add_column("mode")
    for severity in ("low", "medium", "high"):
        table.add_column(severity, justify="right")
    if quotas:
        table.add_column("quota")
        table.add_column("diverted", justify="right")
    for rule in get_args(Rule):
        # A rule has one mode for the whole replay: its row counts the alerts of that mode.
        counts = stats.shadow_alerts if modes[rule] == "shadow" else stats.alerts
        row = [rule, modes[rule], *(str(counts.get((rule, s), 0)) for s in SEVERITIES)]
        if quotas:
            quota = quotas.get(rule)
            row += [_quota_text(quota), str(stats.diverted.get(rule, 0))]
        table.add_row(*row)
    if quotas:
        trips = [str(stats.alerts.get((BREAKER_RULE, s), 0)) for s in SEVERITIES]
        table.add_row(BREAKER_RULE, "enforce", *trips, "", "")
    err.print(table)
    if rejected:
        codes = Table(title="rejected lines by code", title_justify="left")
        codes.add_column("code")
        codes.add_column("lines", justify="right")
        for code, count in sorted(rejected.items()):
            codes.add_row(code, str(count))
        err.print(codes)


@main.command(short_help="Seeded synthetic traffic with spam and near-misses.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--hours", type=float, default=24.0, show_default=True)
@click.option("--organic-events", type=int, default=40_000, show_default=True)
@click.option(
    "--output",
    "-o",
    default="-",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Events as JSON Lines (default stdout).",
)
@click.option(
    "--expected",
    type=click.Path(dir_okay=False),
    default=None,
    help="Expected alerts as JSON Lines (default: OUTPUT.expected.jsonl for a file).",
)
@click.option(
    "--topic",
    default=None,
    help="Send the events to this Kafka topic instead (cluster and security from "
    "RECIPROCITY_KAFKA__*), keyed by actor.",
)
def generate(
    seed: int,
    users: int,
    hours: float,
    organic_events: int,
    output: str,
    expected: str | None,
    topic: str | None,
) -> None:
    """Seeded synthetic traffic with injected spam scenarios and near-misses."""
    from service.devtools.generate import generate_traffic, write_jsonl

    settings = load_settings() if topic else None
    traffic = generate_traffic(seed, users=users, hours=hours, organic_events=organic_events)
    if settings is not None and topic is not None:
        import asyncio

        from service.devtools.produce import produce_events

        sent = asyncio.run(produce_events(settings.kafka, topic, traffic.events))
        click.echo(f"{sent:,} events sent to {topic}", err=True)
    elif output == "-":
        write_jsonl(traffic.events, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with open(output, "wb") as out:
            write_jsonl(traffic.events, out)
        expected = expected or f"{output}.expected.jsonl"
    if expected:
        with open(expected, "wb") as out:
            write_jsonl((e.to_json() for e in traffic.expected), out)


@main.command(short_help="Broker, worker and traffic on this machine; alerts live.")
@click.option(
    "--duration",
    type=float,
    default=3600.0,
    show_default=True,
    help="Stop after this many seconds.",
)
@click.option(
    "--rate", type=float, default=2000.0, show_default=True, help="Generated events per second."
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--bootstrap", default=None, help="Use this Kafka cluster instead of starting a local broker."
)
@click.option("--port", type=int, default=None, help="Worker web port (default: a free one).")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reciprocity-demo"),
    show_default=True,
    help="Worker state and log.",
)
def demo(
    duration: float, rate: float, seed: int, bootstrap: str | None, port: int | None, workdir: Path
) -> None:
    """Local broker + worker + generated traffic; alerts shown as they happen."""
    from service.devtools.demo import run_demo

    load_settings()  # fail early on a bad environment, as the worker would
    run_demo(duration, rate, seed, bootstrap, port, workdir)


@main.command(short_help="Run the streaming worker against Kafka.")
def worker() -> None:
    """Run the streaming worker (Faust) against the configured Kafka cluster.

    Every setting is an environment variable RECIPROCITY_<SECTION>__<FIELD> (for example
    RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS); `reciprocity config` prints them all with their
    values and where each came from, and the README's Settings section says what each is for.
    The detection settings can also come from a YAML or JSON file named by
    RECIPROCITY_DETECTION_FILE, re-read on SIGHUP and when it changes.
    """
    import faust

    from service.runtime.kafka_clients import (
        AccessRefused,
        BrokersUnreachable,
        check_access,
        wait_for_brokers,
    )
    from service.runtime.log_repeats import RepeatedLines

    class QuietWorker(faust.Worker):
        """Faust's worker, with repeated warning and error lines held back (a broker outage
        made its clients log thousands a second)."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            repeats = RepeatedLines()
            for handler in logger.handlers:
                handler.addFilter(repeats)

    from service.worker.app import create_app

    settings = load_settings()
    err = Console(stderr=True)
    # A loop of its own, not asyncio.run: that would unset the current loop Faust's worker
    # picks up next.
    loop = asyncio.new_event_loop()
    topics = settings.topics
    app_id = settings.worker.app_id
    try:
        loop.run_until_complete(
            wait_for_brokers(
                settings.kafka,
                settings.kafka.connect_timeout_seconds,
                lambda line: err.print(line, highlight=False, soft_wrap=True),
            )
        )
        loop.run_until_complete(
            check_access(
                settings.kafka,
                [*topics.events, topics.alerts, topics.shadow_alerts, topics.dead_letters],
                [app_id, f"{app_id}-ingest"],
            )
        )
    except (BrokersUnreachable, AccessRefused) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        loop.close()
    tune_gc()
    app = create_app(settings)
    runner = QuietWorker(app, loglevel=settings.worker.log_level)
    # Faust's terminal spinner lowers the root logger to DEBUG so that every record spins it:
    # a fifth of the worker's CPU went into debug records nobody sees, and it writes escape
    # codes into container logs.
    runner.spinner = None
    runner.execute_from_commandline()


@main.command(short_help="Write the topics' JSON Schemas and AsyncAPI document.")
@click.option(
    "--out",
    "out_dir",
    default="schemas",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
def schemas(out_dir: Path) -> None:
    """Write the JSON Schema of every topic's messages into OUT, and asyncapi.yaml, the
    AsyncAPI 3.0.0 document of the topics built from them (its examples are the golden alert
    payloads of tests/core/golden/: run it in a source checkout)."""
    from service.core.asyncapi import write_asyncapi
    from service.core.schemas import write_schemas

    for path in [*write_schemas(out_dir), write_asyncapi(out_dir)]:
        click.echo(str(path))


@main.command(short_help="Print the kafka-acls.sh commands the worker (or bridge) needs.")
@click.option(
    "--principal",
    default="User:reciprocity",
    show_default=True,
    help="The worker's principal (for SASL/SCRAM, User:<sasl_username>).",
)
@click.option(
    "--command-config",
    default="admin.properties",
    show_default=True,
    help="The client config file kafka-acls.sh connects with (an administrator's).",
)
@click.option(
    "--for",
    "role",
    type=click.Choice(["worker", "bridge"]),
    default="worker",
    show_default=True,
    help="Whose grants: the worker's, or the Jetstream bridge's (Write on the events topic).",
)
def acls(principal: str, command_config: str, role: str) -> None:
    """Print the kafka-acls.sh commands that grant the worker (or, with --for bridge, the
    Jetstream bridge) exactly what it needs, for the app id and topics of the RECIPROCITY_*
    settings."""
    from service.kafka_acls import kafka_acls_commands

    settings = load_settings()
    for line in kafka_acls_commands(
        settings, principal, settings.kafka.bootstrap_servers, command_config, role
    ):
        click.echo(line)


@main.command(short_help="Print the effective configuration and where each value came from.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines instead of a table.")
def config(as_json: bool) -> None:
    """Print every setting as VARIABLE=value (secrets masked) with its source (the detection
    file of RECIPROCITY_DETECTION_FILE, the environment, or the default) as a comment. A bad
    value ends it non-zero, naming the variable or the file's field, as it would end the
    worker."""
    from service.settings import DetectionFile, effective_settings

    settings = load_settings()
    source = DetectionFile.of(settings)
    try:
        in_file = source.read().fields if source is not None else frozenset()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    lines = effective_settings(settings, os.environ, in_file)
    if as_json:
        for line in lines:
            click.echo(orjson.dumps(line.__dict__))
        return
    for line in lines:  # as an environment file holds them, the source a comment
        click.echo(f"{line.variable}={line.value}  # {line.source}")


@main.group(short_help="Feed the events topic from another network's stream.")
def bridge() -> None:
    """Feed the events topic (the first of RECIPROCITY_TOPICS__EVENTS) from another network's
    public stream, as any producer would: events keyed by actor."""


@bridge.command(short_help="Bluesky's Jetstream to the events topic.")
@click.option(
    "--url",
    default=None,
    help="Jetstream's subscribe URL (default RECIPROCITY_BRIDGE__JETSTREAM_URL).",
)
@click.option(
    "--cursor-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the cursor is kept (default RECIPROCITY_BRIDGE__CURSOR_PATH).",
)
@click.option(
    "--from-now", is_flag=True, help="Ignore a saved cursor: start at Jetstream's live tail."
)
def jetstream(url: str | None, cursor_file: Path | None, from_now: bool) -> None:
    """Read Bluesky's Jetstream and send follows, unfollows, reposts (as retweets), replies,
    mentions and posts to the events topic, keyed by actor, until Ctrl-C or SIGTERM.

    It resumes from a cursor saved on disk once Kafka acknowledged the events before it, and
    reconnects when the connection drops. Metrics on RECIPROCITY_BRIDGE__METRICS_PORT;
    docs/jetstream-bridge.md says what is mapped and what is not.
    """
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from service.bridge.cursor import CursorFileError
    from service.bridge.jetstream import BridgeFailure, run_jetstream_bridge, with_overrides
    from service.runtime.kafka_clients import BrokersUnreachable

    try:
        settings = with_overrides(load_settings(), url, cursor_file)
    except ValidationError as exc:
        reasons = "; ".join(error["msg"] for error in exc.errors(include_url=False))
        raise click.BadParameter(reasons, param_hint="--url") from None
    try:
        asyncio.run(run_jetstream_bridge(settings, from_now))
    except (BridgeFailure, BrokersUnreachable, CursorFileError) as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaError as exc:
        raise click.ClickException(
            f"Kafka at {settings.kafka.bootstrap_servers}: {exc!r}".replace("\n", " ")
        ) from None


@main.command(short_help="Follow the alerts topic, one readable line per alert.")
@click.option("--json", "as_json", is_flag=True, help="Pass the alerts through as JSON Lines.")
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
@click.option("--subject", "subjects", multiple=True, help="Only this subject (repeatable).")
@click.option(
    "--min-severity",
    type=click.Choice(["low", "medium", "high"]),
    default="low",
    show_default=True,
)
@click.option("--from-beginning", is_flag=True, help="Start at the topic's oldest alert.")
@click.option("--since", default=None, help="Start this long ago: 30s, 15m, 2h, 1d.")
@click.option(
    "--exit", "exit_at_end", is_flag=True, help="Stop at the topic's end instead of following."
)
@click.option(
    "--shadow",
    is_flag=True,
    help="The shadow-alerts topic instead: the alerts of rules in shadow mode, and those "
    "of enforced rules past their quota (marked over quota).",
)
def alerts(
    as_json: bool,
    rules: tuple[str, ...],
    subjects: tuple[str, ...],
    min_severity: str,
    from_beginning: bool,
    since: str | None,
    exit_at_end: bool,
    shadow: bool,
) -> None:
    """Follow the alerts topic (RECIPROCITY_TOPICS__ALERTS on the configured cluster) from now
    on, or from the beginning, or since a while ago; with --shadow, the shadow-alerts topic
    (RECIPROCITY_TOPICS__SHADOW_ALERTS). Each alert is shown once, even when it was published
    twice."""
    from aiokafka.errors import KafkaError

    from service.alert_feed import (
        AlertFilter,
        NoSuchTopic,
        alert_line,
        follow,
        json_line,
        since_seconds,
    )
    from service.core.models import Severity

    settings = load_settings()
    if from_beginning and since is not None:
        raise click.UsageError("--from-beginning and --since exclude each other")
    start: str | float = "earliest" if from_beginning else "latest"
    if since is not None:
        try:
            start = since_seconds(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    keep = AlertFilter(frozenset(rules), frozenset(subjects), Severity(min_severity))
    out = Console(highlight=False, soft_wrap=True)

    def show(value: bytes, alert: Alert | None) -> None:
        if as_json:
            sys.stdout.buffer.write(json_line(value) + b"\n")
            sys.stdout.flush()
        elif alert is not None:
            out.print(alert_line(alert))
        else:
            out.print(f"(not an alert) {value[:200]!r}", style="dim")

    try:
        asyncio.run(follow(settings, keep, start, exit_at_end, show, shadow))
    except KeyboardInterrupt:  # Ctrl-C ends a follow
        return
    except (NoSuchTopic, KafkaError) as exc:
        raise click.ClickException(
            f"{exc} (Kafka at {settings.kafka.bootstrap_servers})"
            if isinstance(exc, NoSuchTopic)
            else f"Kafka at {settings.kafka.bootstrap_servers}: {exc}"
        ) from None
