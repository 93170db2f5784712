"""The topics the worker creates before it subscribes, configured as Faust would."""

from __future__ import annotations

from service.settings import Settings
from service.worker.app import create_app


def test_every_topic_the_worker_uses_is_declared_with_its_configuration() -> None:
    settings = Settings.model_validate(
        {"worker": {"app_id": "rx"}, "topics": {"events": "ev", "partitions": 6}}
    )
    app = create_app(settings)
    specs = {spec.name: spec for spec in app.topic_specs}
    assert set(specs) == {
        "ev",
        "rx-stage1-by-actor",
        "rx-stage2-by-target",
        "rx-stage3-by-requester",
        "rx-quota-by-rule",  # declared whatever the quotas, as the shadow topic
        settings.topics.alerts,
        settings.topics.shadow_alerts,
        settings.topics.dead_letters,
        "rx-actors-changelog",
        "rx-targets-changelog",
        "rx-relations-changelog",
    }
    assert {spec.partitions for spec in specs.values()} == {6}
    for table in ("actors", "targets", "relations"):
        assert specs[f"rx-{table}-changelog"].config["cleanup.policy"] == "compact"
    day_ms = 86_400_000
    # Shadow alerts are kept as long as the alerts they would have been.
    for alerts in (settings.topics.alerts, settings.topics.shadow_alerts):
        assert specs[alerts].config["retention.ms"] == str(
            settings.topics.alerts_retention_days * day_ms
        )
    assert specs[settings.topics.dead_letters].config["retention.ms"] == str(
        settings.topics.dead_letters_retention_days * day_ms
    )


def test_with_a_quota_the_quota_stage_has_its_table_and_agent() -> None:
    plain = create_app(Settings.model_validate({"worker": {"app_id": "rx"}}))
    assert "quota_by_rule" not in {agent.name for agent in plain.agents.values()}
    settings = Settings.model_validate(
        {
            "worker": {"app_id": "rx"},
            "topics": {"partitions": 6},
            "detection": {"follow_churn": {"quota_per_hour": 5}},
        }
    )
    app = create_app(settings)
    specs = {spec.name: spec for spec in app.topic_specs}
    assert specs["rx-quota-by-rule"].partitions == 6
    assert specs["rx-quotas-changelog"].config["cleanup.policy"] == "compact"
    assert "quota_by_rule" in {agent.name for agent in app.agents.values()}
