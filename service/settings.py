"""Every tunable of Reciprocity, in one frozen object built once and passed down.

Each threshold carries a one-line reason. Nested sections reject unknown keys, so a typo in
`RECIPROCITY_DETECTION__FOLLOWER_SPIKE__WINDOW_SECONDS` fails at start instead of being ignored.

The detection section can also come from a YAML or JSON file (`RECIPROCITY_DETECTION_FILE`),
which the worker re-reads while it runs: `DetectionFile` reads and validates it; the fields it
sets win over the same `RECIPROCITY_DETECTION__*` variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from service.core.share_request import DEFAULT_NOT_A_REQUEST_PATTERNS, DEFAULT_REQUEST_PATTERNS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSettings(Section):
    max_message_bytes: int = Field(
        65_536, ge=1, description="Contract limit: larger messages are dead-lettered."
    )
    max_future_seconds: int = Field(
        300, ge=0, description="Clock skew tolerated before an event counts as from the future."
    )
    dead_letter_keep_bytes: int = Field(
        65_536,
        ge=0,
        le=327_680,
        description="Bytes of a rejected key and of its value copied into the dead letter; "
        "past this a prefix, the size and a SHA-256. The default keeps every message rejected "
        "for its content whole; the bound keeps a dead letter (base64, key and value) under the "
        "producer's 1,000,000-byte request limit.",
    )


class StateSettings(Section):
    allowed_lateness_seconds: int = Field(
        60,
        ge=0,
        le=300,
        description=(
            "Events this far behind the newest event time are re-ordered into place; older "
            "ones are counted as late and ignored. At most 300 s so the 5-minute buckets of "
            "the 1 h window still hold them."
        ),
    )
    merge_skew_seconds: int = Field(
        900,
        ge=0,
        le=3600,
        description=(
            "Stage 2 merges every actor partition; during a backlog one partition can run this "
            "far ahead in event time, and incoming-side buckets are kept long enough to still "
            "count the others' events."
        ),
    )
    recent_ids_per_account: int = Field(
        256,
        ge=8,
        description=(
            "Event ids remembered per account for de-duplication; past this within the "
            "lateness bound the account's late floor rises instead of forgetting an id."
        ),
    )
    relations_per_account: int = Field(
        10_000,
        ge=1,
        description=(
            "Outgoing relations (follows, engagements) kept per account: above the largest "
            "following limits of real platforms, so only bots reach it."
        ),
    )


RuleMode = Literal["enforce", "shadow", "off"]


class RuleSection(Section):
    """A rule's section: what becomes of its alerts, then its thresholds."""

    mode: RuleMode = Field(
        "enforce",
        description="enforce: alerts go to the alerts topic; shadow: computed alike but sent "
        "only to the shadow topic, to watch a new rule or threshold on live traffic before "
        "moderators act on it; off: no alerts (its state is still kept, so it resumes warm).",
    )
    quota_per_hour: int | None = Field(
        None,
        ge=1,
        description="Most enforced alerts of this rule per event-time hour (UTC); past it the "
        "rule's breaker opens and its alerts go to the shadow topic until the next hour: a "
        "rule gone wrong must not flood moderators. None: no hourly quota.",
    )
    quota_per_day: int | None = Field(
        None,
        ge=1,
        description="Most enforced alerts of this rule per event-time day (UTC), the same way: "
        "bounds a slower flood that stays under the hourly quota. None: no daily quota.",
    )


class RetweetRequestSettings(RuleSection):
    relationship_horizon_days: int = Field(
        90, ge=1, description="Contract: engagement this recent makes two accounts acquainted."
    )
    window_seconds: int = Field(
        3600, ge=60, description="Contract: distinct strangers asked are counted over 1 h."
    )
    medium_distinct_strangers: int = Field(
        3, ge=1, description="Contract default: three strangers in an hour is a campaign."
    )
    high_distinct_strangers: int = Field(
        10, ge=1, description="Contract default: ten strangers in an hour is a bot or a farm."
    )
    request_patterns: tuple[str, ...] = Field(
        DEFAULT_REQUEST_PATTERNS, description="Regexes (case-insensitive) that ask for a share."
    )
    not_a_request_patterns: tuple[str, ...] = Field(
        DEFAULT_NOT_A_REQUEST_PATTERNS,
        description="Regexes removed before matching: quoting (RT @x:) and look-alikes.",
    )


class FollowerSpikeSettings(RuleSection):
    window_seconds: int = Field(
        600, ge=60, le=3600, description="Contract: bought followers land within minutes."
    )
    min_follows: int = Field(
        30,
        ge=1,
        description="Floor for new or quiet accounts: fewer follows in a window is never a spike.",
    )
    baseline_multiplier: float = Field(
        8.0,
        ge=1.0,
        description="A spike is this many times the account's own average gain per window.",
    )
    min_low_quality_share: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Bought followers dominate a purchase; organic bumps are mostly real accounts.",
    )
    min_follows_1h: int = Field(
        50, ge=1, description="Floor of the 1 h window: a purchase dripped over an hour or two."
    )
    min_follows_6h: int = Field(
        100, ge=1, description="Floor of the 6 h window: a purchase dripped over hours."
    )
    min_follows_24h: int = Field(
        150, ge=1, description="Floor of the 24 h window: a purchase dripped over a day."
    )
    floor_relief: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Floors fall by up to this share as the low-quality share rises from its "
        "minimum to 100 %: the surer the followers are bought, the fewer it takes to be sure.",
    )
    named_followers: int = Field(
        100,
        ge=1,
        le=100,
        description="Latest low-quality followers kept per account and named in an alert's "
        "related_ids (bounds state; the contract caps related_ids at 100).",
    )
    high_multiplier: float = Field(
        5.0, ge=1.0, description="Escalate to high once the window holds this many times the bar."
    )
    fresh_account_days: int = Field(
        30, ge=1, description="Accounts younger than this are typical of bought followers."
    )
    follow_ratio: float = Field(
        10.0,
        ge=1.0,
        description="Following this many times more accounts than followers looks like a farm.",
    )
    min_following_for_ratio: int = Field(
        50, ge=0, description="The ratio is ignored for accounts that follow very few."
    )
    fast_follows_per_hour: int = Field(
        60, ge=1, description="A person does not follow a new account every minute for an hour."
    )
    lockstep_window_seconds: int = Field(
        1800,
        ge=60,
        le=6 * 3600,
        description="Lockstep (CopyCatch): bought followers of one order follow their "
        "customers within the same run of minutes; 30 min holds a run, and few organic ones.",
    )
    lockstep_min_followers: int = Field(
        5,
        ge=2,
        description="Lockstep: this many new followers of an account who followed the same "
        "other account in the window; organic cascades seldom line up five on two accounts.",
    )
    lockstep_min_shared: int = Field(
        1,
        ge=1,
        description="Lockstep: other accounts two followers must have both followed in the "
        "window (besides this one) to move together; one already makes two shared targets.",
    )
    lockstep_follows_kept: int = Field(
        8,
        ge=1,
        le=64,
        description="Per account, its latest follows kept for lockstep (bounds actor state "
        "and what a follow carries to stage 2).",
    )
    lockstep_followers_kept: int = Field(
        32,
        ge=2,
        le=256,
        description="Per account, its latest followers that followed others in the window, "
        "kept to compare against (bounds target state).",
    )

    @model_validator(mode="after")
    def _lockstep_group_fits(self) -> FollowerSpikeSettings:
        if self.lockstep_min_followers > self.lockstep_followers_kept + 1:
            raise ValueError(
                "lockstep_min_followers cannot exceed lockstep_followers_kept + 1: a group that "
                "large would never be seen"
            )
        return self


class FollowChurnSettings(RuleSection):
    churn_within_seconds: int = Field(
        86_400, ge=60, le=86_400, description="Contract: an unfollow within 24 h churns the pair."
    )
    window_seconds: int = Field(
        86_400,
        ge=3600,
        le=86_400,
        multiple_of=3600,
        description="Contract: churned pairs are counted over 24 h (whole hours: the follow "
        "counts it reads are hourly).",
    )
    min_churned_pairs: int = Field(
        50, ge=1, description="Contract default: fifty churned pairs a day is farming."
    )
    max_follow_back_rate: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Contract: mostly targets that did not follow back; above this it is pruning.",
    )
    high_multiplier: float = Field(
        4.0,
        ge=1.0,
        description="Escalate to high once churned pairs reach this many times the bar.",
    )


class DuplicateReplySettings(RuleSection):
    window_seconds: int = Field(
        3600, ge=60, description="Contract: identical texts are compared over 1 h."
    )
    min_distinct_targets: int = Field(
        5, ge=2, description="Contract default: one text to five people is a broadcast, not a chat."
    )
    min_sends: int = Field(
        5,
        ge=1,
        description="Contract: one message is one send, so one post mentioning several friends "
        "is not copy-paste spam; the same text must go out this many separate times.",
    )
    min_text_chars: int = Field(
        16,
        ge=0,
        description="Short courtesies (thanks!, congrats) repeat honestly; spam carries a pitch.",
    )
    min_similarity: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="Contract: a varying word does not make a new text; one word changed in "
        "four keeps 40 % of the word shingles (Jaccard), honest variety keeps less.",
    )
    sketch_size: int = Field(
        24,
        ge=4,
        description="Shingle hashes kept per text (a bottom-k MinHash sketch): bounds state, "
        "exact for texts up to 12 words.",
    )
    texts_per_account: int = Field(
        8, ge=1, description="Distinct recent texts tracked per account (bounds state)."
    )
    high_multiplier: float = Field(
        4.0, ge=1.0, description="Escalate to high once targets reach this many times the bar."
    )


class DetectionSettings(Section):
    state: StateSettings = StateSettings()
    unsolicited_retweet_request: RetweetRequestSettings = RetweetRequestSettings()
    follower_spike: FollowerSpikeSettings = FollowerSpikeSettings()
    follow_churn: FollowChurnSettings = FollowChurnSettings()
    duplicate_reply_spam: DuplicateReplySettings = DuplicateReplySettings()

    @model_validator(mode="after")
    def _severities_ordered(self) -> DetectionSettings:
        rt = self.unsolicited_retweet_request
        if rt.high_distinct_strangers < rt.medium_distinct_strangers:
            raise ValueError(
                "unsolicited_retweet_request.high_distinct_strangers must be >= "
                "medium_distinct_strangers"
            )
        return self


class KafkaSettings(Section):
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of the Kafka cluster."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certs.")
    ssl_certfile: Path | None = Field(
        None,
        description="This client's certificate chain (PEM), for brokers that require client "
        "certificates (mTLS, ssl.client.auth=required); the key may be in the same file.",
    )
    ssl_keyfile: Path | None = Field(
        None, description="The key of ssl_certfile (PEM), when it is not in that file."
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted ssl_keyfile (or ssl_certfile's key)."
    )
    connect_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="How long the worker retries brokers it cannot reach at start (a broker "
        "restarting beside it) before it gives up and exits.",
    )
    delivery_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="How long a produced message may wait for a partition leader and its "
        "acknowledgement, retried meanwhile, before the worker gives up and exits: it rides out "
        "a broker restart or outage shorter than this (aiokafka's 40 s default did not).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _every_address_is_host_and_port(cls, value: str) -> str:
        addresses = [address.strip() for address in value.split(",")]
        for address in addresses:
            host, colon, port = address.rpartition(":")
            host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            if not colon or not host or any(c.isspace() or c in "/@" for c in host):
                raise ValueError(f"{address!r} is not host:port")
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
        return ",".join(addresses)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile needs ssl_certfile (the certificate it is the key of)")
        if self.ssl_certfile is not None and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"ssl_certfile needs TLS: security_protocol is {self.security_protocol}"
            )
        return self


class TopicSettings(Section):
    events: Annotated[tuple[str, ...], NoDecode] = Field(
        ("social.events",), description="Input topics; a JSON list or comma-separated names."
    )
    alerts: str = "social.alerts"
    shadow_alerts: str = Field(
        "social.alerts.shadow",
        description="Alerts of rules in shadow mode: kept apart so that no moderation tool "
        "reading the alerts topic acts on them (same retention as the alerts).",
    )
    dead_letters: str = "social.events.dlq"
    partitions: int = Field(
        8, ge=1, description="Partitions of the stage topics and tables: the most workers useful."
    )
    replication_factor: int = Field(1, ge=1, description="For topics the service creates.")
    alerts_retention_days: int = Field(
        30,
        ge=1,
        description="Alerts are evidence moderators may revisit for a month (shadow alerts "
        "too: a trial is judged over weeks).",
    )
    dead_letters_retention_days: int = Field(
        14, ge=1, description="Long enough to fix a producer and re-drive its messages."
    )

    @field_validator("events", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value


class WorkerSettings(Section):
    app_id: str = Field("reciprocity", description="Consumer group and internal topic prefix.")
    web_bind: str = "0.0.0.0"
    web_host: str = Field(
        "127.0.0.1", description="How other workers reach this one (request forwarding)."
    )
    web_port: int = Field(6066, ge=1, le=65535)
    store: Literal["memory://", "rocksdb://"] = Field(
        "memory://", description="Table store; rocksdb:// keeps state on disk (needs rocksdict)."
    )
    data_dir: Path = Field(Path("reciprocity-data"), description="Faust's state directory.")
    batch_max_events: int = Field(
        4000,
        ge=1,
        description="Most events ingest takes per fetch. Each fetch becomes one stage-1 message "
        "per partition, and big stage messages are cheap ones (a stage message costs the "
        "worker a few hundred us whatever its size).",
    )
    ingest_fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        le=500,
        description="How long the broker may hold ingest's fetch for `ingest_fetch_min_bytes` "
        "to arrive (Kafka's fetch.max.wait.ms); 0 returns every fetch at once. At a live pace "
        "the wait makes stage-1 messages 3x bigger and cost the worker 12-20 % less CPU "
        "(4,000 events/s); a backlog fills the fetch at once, so draining one never waits.",
    )
    ingest_fetch_min_bytes: int = Field(
        262_144,
        ge=1,
        description="What answers ingest's fetch before its wait is over (Kafka's "
        "fetch.min.bytes): about 800 events of 300 bytes.",
    )
    ingest_batches_ahead: int = Field(
        2,
        ge=1,
        description="Backpressure: ingest pauses its partitions while this many of its batches "
        "are not yet handled by stage 1 (one it works on, one waiting): a backlog waits in "
        "Kafka and comes back as bigger batches, which stage 1 handles for the same overhead.",
    )
    producer_batch_bytes: int = Field(
        524_288,
        ge=16_384,
        le=1_000_000,
        description="Per-partition producer batch: aiokafka blocks a send while a full batch "
        "waits for its round trip, and every table write is a changelog send.",
    )
    producer_linger_seconds: float = Field(
        0.0, ge=0, description="Extra wait to fill producer batches (adds to every hop)."
    )
    tail_gap_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often to look for stage partitions that Faust committed past what the "
        "stage applied (it acks messages it skips around a rebalance); such a stage is sent an "
        "empty message to wake it up, or a skipped range at the tail would wait for new input.",
    )
    stage2_max_wait_seconds: float = Field(
        10.0,
        gt=0,
        description="Stage 2 waits for stage 1 of its partition to reach a message's event "
        "time or catch up with its input (a friend's request must not look like a stranger's "
        "while stage 1 replays a backlog); the bound keeps a stalled stage 1 from stopping it.",
    )
    table_standby_replicas: int = Field(
        0,
        ge=0,
        description="Standby copies of each table partition kept by other workers, for a "
        "faster take-over. Off by default: a standby re-reads every changelog record through "
        "Faust's per-message path (~200 us each, a few records per event), which costs the "
        "other workers about as much CPU as the events themselves.",
    )
    stop_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="A stop (SIGTERM) that takes longer ends the process at once: within the "
        "30 s grace periods of compose and Kubernetes even with the brokers gone, and safe "
        "because nothing unacknowledged is ever committed.",
    )
    api_token: SecretStr | None = Field(
        None,
        description="If set, /users/{id}/reciprocity (per-account data) wants the header "
        "'Authorization: Bearer <token>'; /metrics, /healthz and /readyz stay open.",
    )
    metrics_render_seconds: float = Field(
        1.0,
        ge=0,
        description="/metrics is rendered at most this often; scrapes in between get the "
        "cached body, so that scrapers cannot take the event loop from the stages.",
    )
    metrics_scrapes_per_second: float = Field(
        20.0,
        gt=0,
        description="/metrics answers at most this many scrapes a second; more wait their "
        "turn, asleep: 200 scrapers in a loop cost the stages what 20 scrapes do (a Prometheus "
        "pair scraping every 15 s asks for 0.13 a second).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    detection_file_check_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the worker reads RECIPROCITY_DETECTION_FILE to see whether its "
        "content changed (a mounted ConfigMap changes by a symlink swap, which only the content "
        "shows); SIGHUP re-reads it at once.",
    )


class BridgeSettings(Section):
    """`reciprocity bridge jetstream`: Bluesky's Jetstream to the events topic."""

    jetstream_url: str = Field(
        "wss://jetstream2.us-east.bsky.network/subscribe",
        description="Jetstream's subscribe endpoint (ws:// or wss://); the bridge adds the "
        "collections it maps and the cursor to its query.",
    )
    cursor_path: Path = Field(
        Path("jetstream.cursor"),
        description="Where the cursor (time_us of the last frame Kafka acknowledged) is kept, "
        "so that a restart resumes where the last run's acknowledged events end.",
    )
    cursor_rewind_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="A resume starts this far before the saved cursor, as Jetstream's docs "
        "advise: frames are not strictly in time_us order, and a re-sent event keeps its id.",
    )
    follow_store_max: int = Field(
        500_000,
        ge=1,
        description="Follow records remembered (repo and rkey to the followed account, about "
        "250 bytes each) to turn a follow's delete, which names only its rkey, into an "
        "unfollow; the oldest is forgotten first.",
    )
    max_frame_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=16_777_216,
        description="Frames larger than this are skipped and counted (Jetstream is asked not "
        "to send them): a post is a few kilobytes, a larger frame is garbage or abuse.",
    )
    reconnect_min_seconds: float = Field(
        1.0,
        gt=0,
        description="First pause before reconnecting to Jetstream; it doubles (with jitter) "
        "per failed attempt.",
    )
    reconnect_max_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest pause between reconnects: an outage is retried for ever, at "
        "least this often.",
    )
    metrics_bind: str = Field(
        "0.0.0.0", description="Address the bridge's /metrics listens on (all, for scraping)."
    )
    metrics_port: int = Field(
        6067,
        ge=1,
        le=65535,
        description="Port of the bridge's own /metrics (the worker's default is 6066).",
    )

    @field_validator("jetstream_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"{value!r} is not a ws:// or wss:// URL")
        return value

    @model_validator(mode="after")
    def _backoff_ordered(self) -> BridgeSettings:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("reconnect_max_seconds must be >= reconnect_min_seconds")
        return self


class Settings(BaseSettings):
    """The whole configuration; environment variables `RECIPROCITY_<SECTION>__<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix="RECIPROCITY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    input: InputSettings = InputSettings()
    detection: DetectionSettings = DetectionSettings()
    bridge: BridgeSettings = BridgeSettings()
    # What the variables (or the constructor) set of the detection section, before a detection
    # file was layered over it (`with_detection_file`): a re-read file goes over it again.
    _detection_under_file: dict[str, Any] | None = PrivateAttr(None)
    detection_file: Path | None = Field(
        None,
        description="A YAML (.yaml, .yml) or JSON (.json) file shaped like the detection "
        "section ({follower_spike: {min_follows: 40}}): its fields win over the same "
        "RECIPROCITY_DETECTION__* variables. The worker re-reads it on SIGHUP and when its "
        "content changes, and applies a valid one to the next event.",
    )


def variable_name(path: Iterable[object]) -> str:
    """The environment variable of a setting: `("kafka", "bootstrap_servers")` is
    `RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS`."""
    return "RECIPROCITY_" + "__".join(str(part) for part in path).upper()


class ConfigurationError(ValueError):
    """The environment does not make valid settings; the message names every bad variable."""


def settings_from_environment() -> Settings:
    """The settings of the `RECIPROCITY_*` variables, with the detection file, when one is
    named, layered over their detection section."""
    try:
        settings = Settings()
    except SettingsError as exc:
        # Raised for a value that is not valid JSON where a list or object is expected.
        raise ConfigurationError(f"invalid configuration: {exc}") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            lines.append(f"  {variable_name(error['loc'])}: {error['msg']}")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(lines)) from None
    return with_detection_file(settings)


@dataclass(frozen=True)
class LoadedDetection:
    settings: DetectionSettings
    digest: str  # of the bytes read: the poll compares it to see a change
    fields: frozenset[str]  # dotted paths the file sets: "follower_spike.min_follows"
    shadowed: tuple[str, ...]  # variables whose value the file overrides


@dataclass(frozen=True)
class DetectionFile:
    """`RECIPROCITY_DETECTION_FILE` and what lies under it: the detection fields the
    variables set (`under`, nested like the section). Each read layers the file over them, so
    a field removed from the file falls back to its variable, or to the default."""

    path: Path
    under: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> DetectionFile | None:
        if settings.detection_file is None:
            return None
        under = settings._detection_under_file
        if under is None:  # built directly, not through `with_detection_file`
            under = settings.detection.model_dump(exclude_unset=True)
        return cls(settings.detection_file, under)

    def read_bytes(self) -> bytes:
        """The file's content, through any symlinks (a ConfigMap volume swaps a link)."""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"{self.path}: cannot be read: {exc.strerror}") from None

    def read(self) -> LoadedDetection:
        return self.parse(self.read_bytes())

    def parse(self, content: bytes) -> LoadedDetection:
        """Raises `ConfigurationError` naming the file and each bad field, on one line."""
        given = self.given(content)
        detection = self.validated(_layered(self.under, given))
        fields = frozenset(_paths(given))
        shadowed = tuple(
            variable_name(("detection", *path.split(".")))
            for path in sorted(fields & frozenset(_paths(self.under)))
        )
        return LoadedDetection(detection, content_digest(content), fields, shadowed)

    def given(self, content: bytes) -> dict[str, Any]:
        """What the file itself sets."""
        return _settings_object(self.path, content, "detection settings", _DETECTION_EXAMPLE)

    def validated(self, layered: Mapping[str, Any]) -> DetectionSettings:
        try:
            return DetectionSettings.model_validate(layered)
        except ValidationError as exc:
            raise ConfigurationError(_invalid(self.path, "detection settings", exc)) from None


_DETECTION_EXAMPLE = "{follower_spike: {min_follows: 40}}"


def with_detection_file(settings: Settings) -> Settings:
    """`settings` with its detection file, if it names one, layered over its detection
    section. Raises `ConfigurationError` naming the file and each bad field."""
    source = DetectionFile.of(settings)
    if source is None:
        return settings
    layered = settings.model_copy(update={"detection": source.read().settings})
    layered._detection_under_file = dict(source.under)
    return layered


def rule_sections() -> list[str]:
    """The sections of DetectionSettings that are rules (a mode, quotas, thresholds)."""
    return [
        section
        for section, field_info in DetectionSettings.model_fields.items()
        if isinstance(field_info.annotation, type)
        and issubclass(field_info.annotation, RuleSection)
    ]


def rules_with_quota(detection: DetectionSettings) -> list[str]:
    """The sections of the rules with a quota (per hour, per day or both)."""
    return [
        section
        for section in rule_sections()
        if getattr(detection, section).quota_per_hour is not None
        or getattr(detection, section).quota_per_day is not None
    ]


def restart_only_fields(running: DetectionSettings, new: DetectionSettings) -> list[str]:
    """The fields of `new` that a running pipeline cannot take, because they shape what is
    stored rather than how it is judged: the state section's bounds (a lateness raised live
    would take a re-delivered event whose id was already forgotten for a new one) and the size
    of the stored text sketches (sketches of two sizes compare wrongly). Quotas change live,
    except the first one: a worker started without any quota has no quota stage to send the
    alerts to (`runtime.topology` builds it at the start only when a rule has a quota)."""
    paths = [("state", name) for name in StateSettings.model_fields]
    paths.append(("duplicate_reply_spam", "sketch_size"))
    if not rules_with_quota(running):
        for section in rule_sections():
            paths.extend([(section, "quota_per_hour"), (section, "quota_per_day")])
    return [
        f"{section}.{name}"
        for section, name in paths
        if getattr(getattr(running, section), name) != getattr(getattr(new, section), name)
    ]


def _layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The layers merged field by field, later ones winning."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            below = merged.get(key)
            if isinstance(value, Mapping) and isinstance(below, Mapping):
                merged[key] = _layered(below, value)
            else:
                merged[key] = value
    return merged


def _paths(layer: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in layer.items():
        if isinstance(value, Mapping) and value:
            yield from _paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def content_digest(content: bytes) -> str:
    return blake2b(content, digest_size=16).hexdigest()


def _invalid(path: Path, what: str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(the whole file)"
        lines.append(f"{where}: {error['msg']}")
    return f"{path}: invalid {what}: " + "; ".join(lines)


class SettingsOverEnvironment(Settings):
    """`Settings` whose `.env` file, when one is given (`_env_file`), wins over the environment;
    pydantic-settings' own order is the other way round. Sources are merged section by section,
    so what the file does not set stays as the environment says."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, dotenv_settings, env_settings, file_secret_settings


# A line of a .env file: NAME=value, optionally after `export`; blank lines and # comments.
_ENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=.*")


def settings_over_environment(path: Path) -> Settings:
    """The environment's settings with the file at `path` layered over them (`replay
    --compare-settings`): JSON (`.json`) or YAML (`.yaml`, `.yml`), an object shaped like the
    settings (sections nested, `{"detection": {"follower_spike": {"min_follows": 20}}}`), or
    else a `.env` file of `RECIPROCITY_*=value` lines, each meaning what the same variable
    means. What the file gives wins, over the detection file too; the rest stays as the
    environment (and its detection file) says. Raises `ConfigurationError` naming the file and
    each bad field."""
    structured = path.suffix.lower() in _STRUCTURED
    try:
        if structured:
            given = _settings_file(path)
            layered = SettingsOverEnvironment(**given)
            detection = given.get("detection") or {}
        else:
            _check_env_file(path)
            layered = SettingsOverEnvironment(_env_file=path, _env_file_encoding="utf-8")
            detection = DotEnvSettingsSource(
                Settings, env_file=path, env_file_encoding="utf-8"
            )().get("detection", {})
    except SettingsError as exc:
        raise ConfigurationError(f"{path}: invalid settings: {exc}") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            loc = error["loc"]
            if structured:
                field = ".".join(str(part) for part in loc)
            elif len(loc) == 1 and str(loc[0]) not in Settings.model_fields:
                field = str(loc[0]).upper()  # a .env line that names no setting, as written
            else:
                field = variable_name(loc)
            lines.append(f"  {field}: {error['msg']}")
        raise ConfigurationError(f"{path}: invalid settings:\n" + "\n".join(lines)) from None
    source = DetectionFile.of(layered)
    if source is None:
        return layered
    # The detection file goes between the environment and this file: what this file sets of
    # the detection section wins over it, as over the variables.
    in_file = source.given(source.read_bytes())
    over_file = source.validated(_layered(source.under, in_file, detection))
    return layered.model_copy(update={"detection": over_file})


_STRUCTURED = (".json", ".yaml", ".yml")


def _settings_file(path: Path) -> dict[str, Any]:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read: {exc.strerror}") from None
    return _settings_object(
        path, content, "settings", '{"detection": {"follower_spike": {"min_follows": 20}}}'
    )


def _settings_object(path: Path, content: bytes, what: str, example: str) -> dict[str, Any]:
    """The object a JSON (.json) or YAML (.yaml, .yml) file holds, which must be a mapping."""
    suffix = path.suffix.lower()
    parsed: object
    if suffix == ".json":
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid JSON: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            parsed = yaml.safe_load(content)
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            raise ConfigurationError(f"{path}: not valid YAML: {reason}") from None
    else:
        raise ConfigurationError(
            f"{path}: the file name must end in .yaml, .yml or .json (which says how to read it)"
        )
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            f"{path}: the {what} must be a mapping of sections, such as {example}"
        )
    return parsed


def _check_env_file(path: Path) -> None:
    """Refuse what the .env reader would skip with only a warning: a line that is not
    NAME=value (a JSON file under another name), or a file that sets nothing of ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{path}: not UTF-8 text: {exc}") from None
    ours = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        matched = _ENV_LINE.fullmatch(line)
        if matched is None:
            raise ConfigurationError(
                f"{path}:{number}: not a NAME=value line (a .env file holds RECIPROCITY_* "
                "variables; a JSON file must end in .json)"
            )
        ours += matched.group(1).upper().startswith("RECIPROCITY_")
    if not ours:
        raise ConfigurationError(f"{path}: no RECIPROCITY_* setting in it")


@dataclass(frozen=True)
class SettingLine:
    variable: str
    value: str
    # "variable", "default", "file" (the detection file), or "file, over the variable" (the
    # variable is set too, and has no effect while the file sets the field)
    source: str


def effective_settings(
    settings: Settings, environ: Mapping[str, str], file_fields: Iterable[str] = ()
) -> list[SettingLine]:
    """Every setting as its variable, its value (secrets masked) and where the value came
    from: the detection file (`file_fields`, the dotted paths it sets in the detection
    section), the environment (the variable itself, or a section of it given as JSON) or the
    default."""
    present = {name.upper(): value for name, value in environ.items()}
    in_file = {("detection", *path.split(".")) for path in file_fields}
    lines: list[SettingLine] = []

    def walk(model: BaseModel, path: list[str], from_json: dict[str, Any]) -> None:
        # `from_json`: what a parent section's JSON variable gave this section
        in_json = {key.lower(): item for key, item in from_json.items()}
        for name in type(model).model_fields:
            value = getattr(model, name)
            variable = variable_name([*path, name])
            given = variable in present or name in in_json
            if isinstance(value, BaseModel):
                inner = in_json.get(name)
                section = inner if isinstance(inner, dict) else {}
                if variable in present:  # a whole section as JSON
                    parsed = _json_object(present[variable])
                    section = {**section, **parsed}
                walk(value, [*path, name], section)
                continue
            source = "variable" if given else "default"
            if (*path, name) in in_file:
                source = "file, over the variable" if given else "file"
            lines.append(SettingLine(variable, _shown(value), source))

    walk(settings, [], {})
    return lines


def _json_object(text: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********"
    if value is None:
        return "none"
    if isinstance(value, tuple | list | dict):
        return orjson.dumps(value).decode()
    return str(value)
