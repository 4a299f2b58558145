"""Every voice config's history starts with its original version.

Configs created by migrations have no "created" record: migrations save through historical models,
which simple_history does not follow. The seeded *Default assistant* (0002) has at most the record of
0003's move to newer models, so its first edit in the admin diffed against nothing (an empty change)
and the values it was seeded with could be neither seen nor restored. This adds the missing "created"
record, dated at the config's creation:

* for the config 0002 seeded (slug ``default``), the values 0002 gave it (copied here, so that this
  migration means the same thing forever), on top of its earliest known version for the fields 0002
  did not set;
* for any other config without one, its earliest known version (its oldest record, else the row).

Configs saved through the ORM get their "created" record from simple_history itself.
"""

from django.db import migrations

SEEDED_SLUG = "default"
SEEDED = {  # what 0002_seed_defaults created
    "name": "Default assistant",
    "slug": "default",
    "description": "A friendly general-purpose voice assistant.",
    "is_active": True,
    "is_default": True,
    "model": "gpt-realtime",
    "voice": "marin",
    "instructions": "You are a helpful, concise voice assistant. Keep answers short and conversational.",
    "output_modality": "audio",
    "turn_detection": "server_vad",
    "input_transcription_model": "gpt-4o-mini-transcribe",
    "tools": ["current_time", "calculator"],
}
SEEDED_REASON = "Original version, as seeded (recorded by migration)"
EARLIEST_REASON = "Earliest known version (recorded by migration)"


def record_original_versions(apps, schema_editor):
    VoiceConfig = apps.get_model("voice", "VoiceConfig")
    HistoricalVoiceConfig = apps.get_model("voice", "HistoricalVoiceConfig")
    db = schema_editor.connection.alias
    history = HistoricalVoiceConfig.objects.using(db)
    created = set(history.filter(history_type="+").values_list("id", flat=True))
    copied = [f.attname for f in HistoricalVoiceConfig._meta.concrete_fields if not f.name.startswith("history_")]
    records = []
    for config in VoiceConfig.objects.using(db).exclude(pk__in=created).order_by("pk"):
        earliest = history.filter(id=config.pk).order_by("history_date", "history_id").first()
        source = earliest if earliest is not None else config
        values = {name: getattr(source, name) for name in copied}
        reason = EARLIEST_REASON
        if config.slug == SEEDED_SLUG:
            values.update(SEEDED)
            reason = SEEDED_REASON
        records.append(HistoricalVoiceConfig(
            **values, history_date=config.created_at, history_type="+", history_change_reason=reason,
            history_user_id=None,
        ))
    history.bulk_create(records)


def forget_original_versions(apps, schema_editor):
    HistoricalVoiceConfig = apps.get_model("voice", "HistoricalVoiceConfig")
    HistoricalVoiceConfig.objects.using(schema_editor.connection.alias).filter(
        history_type="+", history_change_reason__in=[SEEDED_REASON, EARLIEST_REASON]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("voice", "0006_scale_ordering_indexes"),
    ]

    operations = [migrations.RunPython(record_original_versions, forget_original_versions)]
