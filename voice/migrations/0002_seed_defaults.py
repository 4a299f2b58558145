"""Seed data: the default voice config, the published model prices and the operators group."""

from decimal import Decimal

from django.contrib.auth.management import create_permissions
from django.db import migrations

# USD per million tokens: text in / cached / out, audio in / cached / out (PROTOCOL.md, as published).
PRICES = {
    "gpt-realtime": ("4", "0.40", "16", "32", "0.40", "64"),
    "gpt-realtime-1.5": ("4", "0.40", "16", "32", "0.40", "64"),
    "gpt-realtime-2": ("4", "0.40", "24", "32", "0.40", "64"),
    "gpt-realtime-2.1": ("4", "0.40", "24", "32", "0.40", "64"),
    "gpt-realtime-2.1-mini": ("0.60", "0.06", "2.40", "10", "0.30", "20"),
}

OPERATORS_GROUP = "Voice operators"
# Operators run the configs and look at sessions; deleting records is for admins only.
OPERATOR_PERMISSIONS = [
    ("voice", "add_voiceconfig"),
    ("voice", "change_voiceconfig"),
    ("voice", "view_voiceconfig"),
    ("voice", "view_historicalvoiceconfig"),
    ("voice", "view_voicesession"),
    ("voice", "view_sessionevent"),
    ("voice", "view_transcriptitem"),
    ("voice", "view_toolcall"),
    ("voice", "view_responseusage"),
    ("voice", "view_modelprice"),
]


def seed(apps, schema_editor):
    VoiceConfig = apps.get_model("voice", "VoiceConfig")
    ModelPrice = apps.get_model("voice", "ModelPrice")
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    if not VoiceConfig.objects.filter(is_default=True).exists():
        VoiceConfig.objects.create(
            name="Default assistant",
            slug="default",
            description="A friendly general-purpose voice assistant.",
            is_active=True,
            is_default=True,
            model="gpt-realtime",
            voice="marin",
            instructions="You are a helpful, concise voice assistant. Keep answers short and conversational.",
            output_modality="audio",
            turn_detection="server_vad",
            input_transcription_model="gpt-4o-mini-transcribe",
            tools=["current_time", "calculator"],
        )
    for model, (ti, tc, to, ai, ac, ao) in PRICES.items():
        ModelPrice.objects.update_or_create(
            model=model,
            defaults={
                "text_input": Decimal(ti), "text_cached_input": Decimal(tc), "text_output": Decimal(to),
                "audio_input": Decimal(ai), "audio_cached_input": Decimal(ac), "audio_output": Decimal(ao),
            },
        )

    # Permissions are normally created after all migrations ran; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group, _ = Group.objects.get_or_create(name=OPERATORS_GROUP)
    perms = [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in OPERATOR_PERMISSIONS]
    group.permissions.set(perms)


def unseed(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=OPERATORS_GROUP).delete()
    apps.get_model("voice", "ModelPrice").objects.filter(model__in=PRICES).delete()
    apps.get_model("voice", "VoiceConfig").objects.filter(slug="default").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("voice", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
