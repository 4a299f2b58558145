"""Start-up checks: warn operators about configs on models that OpenAI is shutting down, or on a voice
service this server has no credentials for."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import OperationalError, ProgrammingError
from django.db.models import Q

from voice import catalog


@register(Tags.database)
def retiring_models(app_configs: Any = None, today: date | None = None, **kwargs: Any) -> list[CheckMessage]:
    """One warning per active config whose realtime or transcription model has an announced shutdown.

    Registered under the database tag, so it runs where the database is meant to be ready (``migrate``,
    ``check --database default``) and the server's start-up checks; a missing table is not its concern.
    """
    from voice.models import VoiceConfig

    today = today or catalog.today()
    retiring = [m.name for m in catalog.MODELS if m.shutdown is not None]
    try:
        configs = list(
            VoiceConfig.objects.active()
            .filter(Q(model__in=retiring) | Q(input_transcription_model__in=retiring))
            .order_by("name")
        )
    except (OperationalError, ProgrammingError):  # not migrated yet: nothing to warn about
        return []
    warnings: list[CheckMessage] = []
    for config in configs:
        notice = config.retirement_notice(today)
        retired = any(catalog.is_retired(n, today) for n in (config.model, config.input_transcription_model))
        warnings.append(
            Warning(
                f"Voice config {config.name!r}: {notice}",
                hint="Edit the config in the admin and choose the replacement model"
                + (" now: sessions on it are refused." if retired else " before that date."),
                obj=config,
                id="voice.W001" if not retired else "voice.W002",
            )
        )
    return warnings


@register(Tags.database)
def providers_configured(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """One warning per active config whose voice service (OpenAI or Azure OpenAI) this server has no
    endpoint or credential for: its sessions would be refused. The server-wide default is checked when
    settings load (a missing Azure endpoint or key there stops start-up)."""
    from voice import providers
    from voice.models import VoiceConfig

    try:
        configs = list(VoiceConfig.objects.active().order_by("name"))
    except (OperationalError, ProgrammingError):
        return []
    warnings: list[CheckMessage] = []
    for config in configs:
        problem = providers.problems(config)
        if problem:
            warnings.append(
                Warning(
                    f"Voice config {config.name!r} uses {providers.service_name(providers.kind_of(config))}, which "
                    f"this server is not set up for: {problem}",
                    hint="Set the variables in the server's environment, or edit the config and choose another "
                    "voice service; sessions of this config are refused until then.",
                    obj=config,
                    id="voice.W003",
                )
            )
    return warnings
