"""The voice app's data: what operators configure and what every session leaves behind."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypedDict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify, smart_split, unescape_string_literal
from simple_history.models import HistoricalRecords

from voice import catalog, transcripts
from voice.tools import get_tool, tool_names

# The GA voices (PROTOCOL.md). `voice` can change only before the first audio output.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
# Kept for importers; the table of models, their shutdown dates and options is voice.catalog.
REALTIME_MODELS = catalog.names("realtime")
TRANSCRIPTION_MODELS = catalog.names("transcription")
MILLION = Decimal(1_000_000)
SIXTY = Decimal(60)

# GPT-Live (docs/gpt-live.md): its models, and its built-in voices (the SDK's enum; the guide's "shida"
# is the SDK's "shitan", and "aube" appears only in a later SDK, so both are left out until confirmed).
LIVE_MODELS = ("gpt-live-1.1", "gpt-live-1")
LIVE_VOICES = (
    "alloy", "ash", "ballad", "beacon", "bossa", "brise", "cedar", "cinder", "coral", "delta", "echo", "flitz",
    "gleam", "harema", "juni", "marin", "meridian", "nira", "noeul", "nuri", "quartz", "ripple", "sage", "shimmer",
    "shitan", "sillage", "stone", "tempo", "verse", "vesper", "willow",
)
# Data-channel events the browser may see on a GPT-Live call (it is untrusted: no delegations, no backend
# events, no usage); it may send none (the server speaks for it on the sideband).
LIVE_BROWSER_EVENTS = ("session.started", "session.input_transcript.delta", "session.output_transcript.delta",
                       "session.closed", "error")


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _is_str_list(value: Any, *, max_items: int, max_length: int) -> bool:
    return (isinstance(value, list) and len(value) <= max_items
            and all(isinstance(v, str) and 0 < len(v) <= max_length for v in value))


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def tool_name_choices() -> list[str]:
    return list(tool_names())


class VoiceConfigQuerySet(models.QuerySet["VoiceConfig"]):
    def active(self) -> VoiceConfigQuerySet:
        return self.filter(is_active=True)

    def default(self) -> VoiceConfig | None:
        return self.active().filter(is_default=True).first()

    def for_slug_or_default(self, slug: str | None) -> VoiceConfig | None:
        if slug:
            return self.active().filter(slug=slug).first()
        return self.default() or self.active().order_by("name").first()


class VoiceConfig(models.Model):
    """A voice/model configuration that sessions start from. Operators edit these in the admin."""

    class OutputModality(models.TextChoices):
        AUDIO = "audio", "Audio (spoken replies, with transcript)"
        TEXT = "text", "Text only"

    class TurnDetection(models.TextChoices):
        SERVER_VAD = "server_vad", "Server VAD (silence based)"
        SEMANTIC_VAD = "semantic_vad", "Semantic VAD (meaning based)"
        NONE = "none", "None (push to talk)"

    class Eagerness(models.TextChoices):
        AUTO = "auto", "auto"
        LOW = "low", "low"
        MEDIUM = "medium", "medium"
        HIGH = "high", "high"

    class NoiseReduction(models.TextChoices):
        NONE = "", "Off"
        NEAR_FIELD = "near_field", "Near field (headset)"
        FAR_FIELD = "far_field", "Far field (laptop, room)"

    class Effort(models.TextChoices):
        # OpenAI's RealtimeReasoningEffort; also the levels of the streaming transcription delay.
        DEFAULT = "", "Model default"
        MINIMAL = "minimal", "minimal"
        LOW = "low", "low"
        MEDIUM = "medium", "medium"
        HIGH = "high", "high"
        XHIGH = "xhigh", "xhigh"

    class Truncation(models.TextChoices):
        AUTO = "auto", "Automatic (OpenAI's default)"
        DISABLED = "disabled", "Disabled (a conversation that outgrows the context fails)"
        RETENTION_RATIO = "retention_ratio", "Keep a fraction of the conversation (fewer, larger truncations)"

    class CallMode(models.TextChoices):
        # docs/architecture.md, "Who owns a call"; docs/protocol.md sections 2 and 3.
        SERVER = "server", "Server-controlled: the server creates the call and hears the model itself"
        RELAY = "relay", "Relay (legacy): the browser creates the call and relays the model's events"

    class Provider(models.TextChoices):
        # voice/providers.py; README "OpenAI and Azure OpenAI".
        DEFAULT = "", "The server's default (VOICE_PROVIDER)"
        OPENAI = "openai", "OpenAI"
        AZURE = "azure", "Azure OpenAI"

    class Protocol(models.TextChoices):
        # docs/gpt-live.md: GPT-Live is served in server mode only (it has no client secrets).
        REALTIME = "realtime", "Realtime API (turns, tools on the voice model)"
        LIVE = "live", "GPT-Live (full duplex; reasoning and tools delegated)"

    class LiveDelegation(models.TextChoices):
        CLIENT = "client", "This server: the tools below answer each delegation"
        RESPONSES = "responses", "A Responses model run by OpenAI, calling the tools below"

    class Approval(models.TextChoices):
        NEVER = "never", "Never: the model calls the allowed tools directly"
        ALWAYS = "always", "Always: every call waits for an approval (this app does not give any yet)"

    class Recording(models.TextChoices):
        # voice/call_audio.py. The user is asked before every recorded call and sees it while it runs.
        OFF = "off", "Off: calls are never recorded"
        ASK = "ask", "Ask: recorded if the user agrees; a user who declines talks unrecorded"
        REQUIRED = "required", "Required: recorded with the user's agreement; no call without it"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True, blank=True)
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive configs cannot start new sessions.")
    is_default = models.BooleanField(default=False, help_text="Used when a session names no config.")
    call_mode = models.CharField(
        max_length=8, choices=CallMode.choices, default=CallMode.SERVER,
        help_text="Server-controlled calls keep their record whatever the browser does, survive a dropped "
                  "connection or a server restart, and may use private MCP credentials. Relay mode is the "
                  "older flow: what it records is only as trustworthy as the browser.",
    )

    protocol = models.CharField(
        max_length=8, choices=Protocol.choices, default=Protocol.REALTIME,
        help_text="Realtime: the settings below under 'Model and voice' and 'Listening'. GPT-Live: the settings "
                  "under 'GPT-Live' (it needs server-controlled calls).",
    )
    live_model = models.CharField(max_length=32, choices=_choices(LIVE_MODELS), default="gpt-live-1.1",
                                  help_text="GPT-Live only. Billed per minute of session (see the prices).")
    live_voice = models.CharField(max_length=32, choices=_choices(LIVE_VOICES), default="marin",
                                  help_text="GPT-Live only; the custom voice above, when set, replaces it.")
    live_delegation = models.CharField(
        max_length=10, choices=LiveDelegation.choices, default=LiveDelegation.CLIENT,
        help_text="Who does the work GPT-Live delegates: this server (with one of the tools below), or a "
                  "Responses model OpenAI runs (it may call the tools below; this server runs them).",
    )
    live_responses_model = models.CharField(
        max_length=64, blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "Letters, digits, '.', '_' and '-' only.")],
        help_text="Responses delegation: the backend model, e.g. gpt-5.5. Add its token prices to record its cost.",
    )
    live_responses_instructions = models.TextField(
        blank=True, help_text="Responses delegation: the backend's own instructions (the voice keeps those above).",
    )
    live_backend_tool = models.CharField(
        max_length=64, blank=True,
        help_text="Delegation to this server: the tool that answers each delegation (one of the tools below). "
                  "Blank: the only tool, when exactly one is chosen.",
    )
    live_transcript_gap_ms = models.PositiveIntegerField(
        default=2000, validators=[MinValueValidator(200), MaxValueValidator(10000)],
        help_text="GPT-Live transcribes both sides itself (no model to choose) in timed fragments; they make one "
                  "transcript line until the speaker changes or is silent this long (200–10000 ms).",
    )

    provider = models.CharField(
        max_length=8, choices=Provider.choices, default=Provider.DEFAULT, blank=True,
        help_text="Where calls go. The credentials come from the server's environment, never from here.",
    )
    azure_endpoint = models.URLField(
        max_length=200, blank=True,
        help_text="Azure OpenAI: the resource's address, e.g. https://my-resource.openai.azure.com. Blank: the "
                  "server's AZURE_OPENAI_ENDPOINT.",
    )
    azure_deployment = models.CharField(
        max_length=64, blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "Letters, digits, '.', '_' and '-' only.")],
        help_text="Azure OpenAI: the name of the deployment of the model below (it is what Azure calls the model). "
                  "Blank: the server's AZURE_OPENAI_DEPLOYMENT, else the model's name.",
    )

    model = models.CharField(
        max_length=64, choices=catalog.realtime_choices, default=catalog.DEFAULT_REALTIME_MODEL,
        help_text="See the README for which model to choose; a model past its shutdown date cannot start sessions.",
    )
    voice = models.CharField(max_length=32, choices=_choices(VOICES), default="marin")
    instructions = models.TextField(blank=True, default="You are a helpful, concise voice assistant.")
    output_modality = models.CharField(max_length=8, choices=OutputModality.choices, default="audio")

    turn_detection = models.CharField(max_length=16, choices=TurnDetection.choices, default="server_vad")
    vad_threshold = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)], help_text="server_vad: 0–1"
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(
        default=300, validators=[MaxValueValidator(2000)], help_text="server_vad: 0–2000 ms"
    )
    vad_silence_duration_ms = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(100), MaxValueValidator(5000)], help_text="server_vad: 100–5000 ms"
    )
    vad_eagerness = models.CharField(max_length=8, choices=Eagerness.choices, default="auto")

    input_transcription_model = models.CharField(
        max_length=64,
        choices=catalog.transcription_choices,
        blank=True,
        default=catalog.DEFAULT_TRANSCRIPTION_MODEL,
        help_text="Blank turns input transcription off (no user transcript is recorded).",
    )
    noise_reduction = models.CharField(max_length=16, choices=NoiseReduction.choices, blank=True, default="")
    speed = models.FloatField(default=1.0, validators=[MinValueValidator(0.25), MaxValueValidator(1.5)])
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(4096)],
        help_text="Blank means no limit ('inf').",
    )
    tools = models.JSONField(default=list, blank=True, help_text="Names of built-in tools the model may call.")

    # Newer GA session options (OpenAI's SDK types, late 2026). Blank or empty means OpenAI's default,
    # and nothing is sent, so a config that does not use them produces the same payload as before.
    reasoning_effort = models.CharField(
        max_length=8, choices=Effort.choices, blank=True, default="",
        help_text="Reasoning models only (see the model list). Lower is faster; higher thinks more before answering.",
    )
    parallel_tool_calls = models.BooleanField(
        null=True, blank=True, help_text="Reasoning models only. Unknown (blank) leaves OpenAI's default.",
    )
    custom_voice_id = models.CharField(
        max_length=64, blank=True,
        validators=[RegexValidator(r"^voice_[A-Za-z0-9_-]+$", "A custom voice id looks like voice_1234.")],
        help_text="A custom voice created with OpenAI (voice_...). Replaces the voice above when set.",
    )
    noise_reduction_strength = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="0–1, with noise reduction on. Blank: OpenAI's default (1).",
    )
    vad_idle_timeout_ms = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(5000), MaxValueValidator(30000)],
        help_text="server_vad: after this long without the user speaking (5000–30000 ms), the model prompts them.",
    )
    transcription_languages = models.JSONField(
        default=list, blank=True, help_text="ISO-639-1 codes of the languages users speak, e.g. en, fr.",
    )
    transcription_keywords = models.JSONField(
        default=list, blank=True, help_text="Words or phrases to expect (names, products), one per line.",
    )
    transcription_delay = models.CharField(
        max_length=8, choices=Effort.choices, blank=True, default="",
        help_text="gpt-realtime-whisper only: a longer delay gives a more accurate transcript later.",
    )
    truncation = models.CharField(max_length=16, choices=Truncation.choices, default=Truncation.AUTO)
    truncation_retention_ratio = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)],
        help_text="With 'keep a fraction': the share of the conversation kept when it is cut (0.01–1).",
    )
    truncation_token_limit = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="With 'keep a fraction': cut once the conversation after the instructions exceeds this many tokens.",
    )
    mcp_server_label = models.CharField(
        max_length=64, blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, _ and - only.")],
        help_text="A name for a remote MCP server the model may use. Blank: no MCP server.",
    )
    mcp_server_url = models.URLField(max_length=500, blank=True, help_text="The MCP server's https URL.")
    mcp_allowed_tools = models.JSONField(
        default=list, blank=True, help_text="The server's tools the model may call, one per line. Empty: all of them.",
    )
    mcp_require_approval = models.CharField(max_length=8, choices=Approval.choices, default=Approval.NEVER)
    mcp_credential_env = models.CharField(
        max_length=64, blank=True,
        validators=[RegexValidator(r"^VOICE_MCP_[A-Z0-9_]+$", "Name an environment variable starting VOICE_MCP_.")],
        help_text="The name of a server environment variable (VOICE_MCP_...) holding the MCP server's access "
                  "token. The token itself is never stored here nor sent to browsers.",
    )

    secret_lifetime_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(10), MaxValueValidator(7200)],
        help_text="How long the browser's client secret may be used to start a call (10–7200 s).",
    )
    max_session_seconds = models.PositiveIntegerField(
        default=900,
        validators=[MinValueValidator(30), MaxValueValidator(3600)],
        help_text="The server ends a session after this long (OpenAI's own cap is 60 minutes).",
    )

    recording = models.CharField(max_length=8, choices=Recording.choices, default=Recording.OFF,
                                 help_text="Whether calls' audio (both sides) is recorded, always with consent.")
    recording_retention_days = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Recordings are deleted this many days after their call (manage.py purge_recordings).",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    objects = VoiceConfigQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # The database enforces "one default" too, so two racing admins cannot both win.
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_config"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.slug:
            self.slug = slugify(self.name)[:100]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if not self.slug and self.name:
            self.slug = slugify(self.name)[:100]
        if self.voice not in VOICES:
            errors.setdefault("voice", []).append(f"Unknown voice {self.voice!r}; choose one of {', '.join(VOICES)}.")
        if self.output_modality not in self.OutputModality.values:
            errors.setdefault("output_modality", []).append(
                "Choose exactly one output modality: audio or text (the API refuses both)."
            )
        if not isinstance(self.tools, list) or not all(isinstance(t, str) for t in self.tools):
            errors.setdefault("tools", []).append("Tools must be a list of tool names.")
        else:
            known = set(tool_name_choices())
            unknown = sorted(set(self.tools) - known)
            if unknown:
                errors.setdefault("tools", []).append(
                    f"Unknown tool(s): {', '.join(unknown)}. Available: {', '.join(sorted(known)) or 'none'}."
                )
            if len(set(self.tools)) != len(self.tools):
                errors.setdefault("tools", []).append("Each tool may be listed once.")
        self._clean_models(errors, catalog.today())
        self._clean_session_options(errors)
        self._clean_provider(errors)
        self._clean_live(errors)
        if self.is_default:
            others = VoiceConfig.objects.filter(is_default=True).exclude(pk=self.pk)
            if others.exists():
                errors.setdefault("is_default", []).append(
                    f"{others.first()} is already the default; untick it there first."
                )
            if not self.is_active:
                errors.setdefault("is_active", []).append("The default config must be active.")
        if errors:
            raise ValidationError(errors)

    def _clean_models(self, errors: dict[str, list[str]], today: date) -> None:
        """A model past its shutdown date cannot be chosen (nor kept: the config must move off it)."""
        for field in ("model", "input_transcription_model"):
            name = getattr(self, field)
            if name and catalog.is_retired(name, today):
                errors.setdefault(field, []).append(catalog.retirement_notice(name, today))

    def _clean_session_options(self, errors: dict[str, list[str]]) -> None:
        """The newer GA options: each only where the chosen model and settings give it a meaning."""

        def add(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        realtime = catalog.info(self.model)
        if not (realtime and realtime.reasoning):
            if self.reasoning_effort:
                add("reasoning_effort", f"{self.model} does not reason; leave reasoning effort at the model default.")
            if self.parallel_tool_calls is not None:
                add("parallel_tool_calls", f"{self.model} does not take this option; leave it unknown.")
        if self.noise_reduction_strength is not None and not self.noise_reduction:
            add("noise_reduction_strength", "Turn noise reduction on (near or far field) to set its strength.")
        if self.vad_idle_timeout_ms is not None and self.turn_detection != self.TurnDetection.SERVER_VAD:
            add("vad_idle_timeout_ms", "The idle timeout works with server VAD only.")

        languages, keywords = self.transcription_languages, self.transcription_keywords
        if not _is_str_list(languages, max_items=10, max_length=2) or not all(
            len(code) == 2 and code.isascii() and code.isalpha() and code.islower() for code in languages
        ):
            add("transcription_languages", "Give up to 10 two-letter ISO-639-1 codes in lower case, e.g. en, fr.")
        if not _is_str_list(keywords, max_items=100, max_length=100) or not all(k.strip() for k in keywords):
            add("transcription_keywords", "Give up to 100 keywords of at most 100 characters each.")
        transcriber = catalog.info(self.input_transcription_model) if self.input_transcription_model else None
        options = transcriber.options if transcriber else frozenset()
        what = self.input_transcription_model or "No transcription"
        if keywords and catalog.KEYWORDS not in options:
            add("transcription_keywords", f"{what} takes no keywords; gpt-transcribe and gpt-live-transcribe do.")
        if isinstance(languages, list) and languages and not transcriber:
            add("transcription_languages", "Choose a transcription model to give it languages.")
        elif isinstance(languages, list) and len(languages) > 1 and catalog.LANGUAGES not in options:
            add("transcription_languages",
                f"{what} takes one language; gpt-transcribe and gpt-live-transcribe take several.")
        if self.transcription_delay and catalog.DELAY not in options:
            add("transcription_delay", f"{what} takes no delay; only gpt-realtime-whisper does.")

        ratio_fields = (self.truncation_retention_ratio, self.truncation_token_limit)
        if self.truncation == self.Truncation.RETENTION_RATIO:
            if self.truncation_retention_ratio is None:
                add("truncation_retention_ratio", "Say which fraction of the conversation to keep (e.g. 0.8).")
        elif any(value is not None for value in ratio_fields):
            add("truncation", "The retention ratio and token limit apply only to 'keep a fraction'.")

        mcp_set = [f for f in ("mcp_server_label", "mcp_server_url") if getattr(self, f)]
        if len(mcp_set) == 1:
            missing = "mcp_server_url" if mcp_set == ["mcp_server_label"] else "mcp_server_label"
            add(missing, "An MCP server needs both a label and a URL.")
        if self.mcp_server_url and not self.mcp_server_url.startswith("https://"):
            add("mcp_server_url", "The MCP server's URL must start with https://.")
        if not _is_str_list(self.mcp_allowed_tools, max_items=100, max_length=64) or not all(
            _TOOL_NAME.fullmatch(t) for t in self.mcp_allowed_tools
        ):
            add("mcp_allowed_tools", "Give up to 100 tool names (letters, digits, _ and -).")
        elif not mcp_set and self.mcp_allowed_tools:
            add("mcp_allowed_tools", "Set the MCP server first.")
        if self.mcp_credential_env and not mcp_set:
            add("mcp_credential_env", "Set the MCP server first.")

    def _clean_provider(self, errors: dict[str, list[str]]) -> None:
        if self.provider not in self.Provider.values:
            errors.setdefault("provider", []).append("Choose OpenAI, Azure OpenAI or the server's default.")
        if self.azure_endpoint:
            from voice.realtime.errors import RealtimeConfigError
            from voice.realtime.providers import azure_api_base

            try:
                azure_api_base(self.azure_endpoint)
            except RealtimeConfigError as exc:
                errors.setdefault("azure_endpoint", []).append(exc.message)
            if not self.azure_endpoint.startswith("https://"):
                errors.setdefault("azure_endpoint", []).append("The endpoint must start with https://.")
        if self.provider == self.Provider.OPENAI and (self.azure_endpoint or self.azure_deployment):
            errors.setdefault("provider", []).append(
                "The Azure endpoint and deployment apply only to Azure OpenAI; clear them or choose Azure OpenAI."
            )

    def _clean_live(self, errors: dict[str, list[str]]) -> None:
        def add(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        if self.protocol not in self.Protocol.values:
            add("protocol", "Choose the Realtime API or GPT-Live.")
            return
        if self.protocol != self.Protocol.LIVE:
            return
        if self.call_mode != self.CallMode.SERVER:
            add("call_mode", "GPT-Live has no browser credentials: it needs server-controlled calls.")
        if self.provider == self.Provider.AZURE:
            add("provider", "This server offers GPT-Live on OpenAI only (Azure's is a preview).")
        if self.live_model not in LIVE_MODELS:
            add("live_model", f"Choose one of {', '.join(LIVE_MODELS)}.")
        if self.live_voice not in LIVE_VOICES:
            add("live_voice", f"Unknown GPT-Live voice {self.live_voice!r}.")
        if self.mcp_server_label or self.mcp_server_url:
            add("mcp_server_url", "GPT-Live calls no MCP server; clear it or use the Realtime API.")
        tools = self.tools if isinstance(self.tools, list) else []
        if self.live_delegation == self.LiveDelegation.RESPONSES:
            if not self.live_responses_model:
                add("live_responses_model", "Name the Responses model that does the delegated work, e.g. gpt-5.5.")
            if self.live_backend_tool:
                add("live_backend_tool", "Only delegation to this server uses a backend tool; clear it.")
        elif self.live_delegation == self.LiveDelegation.CLIENT:
            if self.live_responses_model or self.live_responses_instructions:
                add("live_responses_model", "The Responses model applies to Responses delegation only; clear it.")
            if self.live_backend_tool and self.live_backend_tool not in tools:
                add("live_backend_tool", "Choose the backend tool among the tools ticked below.")
            elif not self.live_backend_tool and len(tools) > 1:
                add("live_backend_tool", "Several tools are ticked: say which one answers delegations.")
        else:
            add("live_delegation", "Choose this server or a Responses model.")

    def live_backend_tool_name(self) -> str:
        """The tool that answers delegations to this server ("" for none)."""
        if self.live_backend_tool:
            return self.live_backend_tool
        return self.tools[0] if isinstance(self.tools, list) and len(self.tools) == 1 else ""

    def live_session_payload(self) -> dict[str, Any]:
        """GPT-Live's ``MediaSessionConfig`` for ``POST /v1/live/sessions`` (docs/gpt-live.md), plus the
        server-side settings under ``ag2_live`` (``voice.realtime.gptlive`` takes them out before sending)."""
        if self.live_delegation == self.LiveDelegation.RESPONSES:
            responses: dict[str, Any] = {"model": self.live_responses_model, "tools": self.tool_definitions(),
                                         "tool_choice": "auto"}
            if self.live_responses_instructions:
                responses["instructions"] = self.live_responses_instructions
            delegation: dict[str, Any] = {"type": "responses", "responses": responses}
        else:
            delegation = {"type": "client"}
        return {
            "model": self.live_model,
            "instructions": self.instructions,
            "audio": {"output": {"voice": {"id": self.custom_voice_id} if self.custom_voice_id else self.live_voice}},
            "delegation": delegation,
            # The browser is untrusted: it hears the call's transcript and lifecycle, sends nothing.
            "client": {"data_channel": {"allowed_client_events": [],
                                        "allowed_server_events": [{"type": t} for t in LIVE_BROWSER_EVENTS]}},
            "ag2_live": {"backend_tool": self.live_backend_tool_name() if delegation["type"] == "client" else "",
                         "transcript_gap_ms": self.live_transcript_gap_ms},
        }

    def voice_payload(self) -> str | dict[str, str]:
        return {"id": self.custom_voice_id} if self.custom_voice_id else self.voice

    def transcription_payload(self) -> dict[str, Any] | None:
        if not self.input_transcription_model:
            return None
        transcription: dict[str, Any] = {"model": self.input_transcription_model}
        model = catalog.info(self.input_transcription_model)
        options = model.options if model else frozenset()
        if self.transcription_languages:
            if catalog.LANGUAGES in options:
                transcription["languages"] = list(self.transcription_languages)
            else:  # the older models and the streaming whisper take a single language
                transcription["language"] = self.transcription_languages[0]
        if self.transcription_keywords:
            transcription["keywords"] = list(self.transcription_keywords)
        if self.transcription_delay:
            transcription["delay"] = self.transcription_delay
        return transcription

    def truncation_payload(self) -> str | dict[str, Any]:
        if self.truncation != self.Truncation.RETENTION_RATIO:
            return self.truncation
        payload: dict[str, Any] = {"type": "retention_ratio", "retention_ratio": self.truncation_retention_ratio}
        if self.truncation_token_limit:
            payload["token_limits"] = {"post_instructions": self.truncation_token_limit}
        return payload

    def mcp_tool(self) -> dict[str, Any] | None:
        """The MCP tool, without its credential: that is added from the environment when a call starts
        (``voice.mcp``), so that it is never stored with the session nor shown to anyone."""
        if not (self.mcp_server_label and self.mcp_server_url):
            return None
        tool: dict[str, Any] = {"type": "mcp", "server_label": self.mcp_server_label,
                                "server_url": self.mcp_server_url, "require_approval": self.mcp_require_approval}
        if self.mcp_allowed_tools:
            tool["allowed_tools"] = list(self.mcp_allowed_tools)
        return tool

    def turn_detection_payload(self) -> dict[str, Any] | None:
        if self.turn_detection == self.TurnDetection.SERVER_VAD:
            server_vad: dict[str, Any] = {
                "type": "server_vad",
                "threshold": self.vad_threshold,
                "prefix_padding_ms": self.vad_prefix_padding_ms,
                "silence_duration_ms": self.vad_silence_duration_ms,
            }
            if self.vad_idle_timeout_ms:
                server_vad["idle_timeout_ms"] = self.vad_idle_timeout_ms
            return server_vad
        if self.turn_detection == self.TurnDetection.SEMANTIC_VAD:
            return {"type": "semantic_vad", "eagerness": self.vad_eagerness}
        return None

    def tool_definitions(self) -> list[dict[str, Any]]:
        return [get_tool(name).definition() for name in self.tools]

    def to_session_payload(self) -> dict[str, Any]:
        """The GA session object (PROTOCOL.md) this config starts sessions with (GPT-Live's for a Live config)."""
        if self.protocol == self.Protocol.LIVE:
            return self.live_session_payload()
        noise_reduction: dict[str, Any] | None = None
        if self.noise_reduction:
            noise_reduction = {"type": self.noise_reduction}
            if self.noise_reduction_strength is not None:
                noise_reduction["strength"] = self.noise_reduction_strength
        audio_input: dict[str, Any] = {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": self.turn_detection_payload(),
            "noise_reduction": noise_reduction,
        }
        transcription = self.transcription_payload()
        if transcription:
            audio_input["transcription"] = transcription
        tools = self.tool_definitions()
        mcp = self.mcp_tool()
        if mcp:
            tools.append(mcp)
        payload: dict[str, Any] = {
            "type": "realtime",
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": [self.output_modality],
            "audio": {
                "input": audio_input,
                "output": {"voice": self.voice_payload(), "speed": self.speed},
            },
            "tools": tools,
            "tool_choice": "auto",
            "max_output_tokens": self.max_output_tokens if self.max_output_tokens else "inf",
        }
        # Only what differs from OpenAI's defaults, so older configs keep their exact payload.
        if self.reasoning_effort:
            payload["reasoning"] = {"effort": self.reasoning_effort}
        if self.parallel_tool_calls is not None:
            payload["parallel_tool_calls"] = self.parallel_tool_calls
        if self.truncation != self.Truncation.AUTO:
            payload["truncation"] = self.truncation_payload()
        return payload

    def retirement_notice(self, today: date | None = None) -> str:
        """The announced shutdown of this config's models, for the admin ("" when none applies)."""
        today = today or catalog.today()
        notices = [catalog.retirement_notice(name, today) for name in (self.model, self.input_transcription_model)]
        return " ".join(n for n in notices if n)


def order_by_chain(items: Iterable[TranscriptItem]) -> list[TranscriptItem]:
    """Conversation order: follow the previous_item_id chain, not arrival order.

    Input transcription arrives asynchronously, so rows are created out of order. OpenAI tells us
    each item's predecessor; items whose predecessor is not among `items` fall back to creation order.
    """
    items = sorted(items, key=lambda i: (i.created_at, i.pk or 0))
    by_prev: dict[str, list[TranscriptItem]] = {}
    known = {item.item_id for item in items}
    roots: list[TranscriptItem] = []
    for item in items:
        if item.previous_item_id and item.previous_item_id in known:
            by_prev.setdefault(item.previous_item_id, []).append(item)
        else:
            roots.append(item)
    ordered: list[TranscriptItem] = []
    seen: set[int] = set()
    stack = list(reversed(roots))
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        ordered.append(item)
        stack.extend(reversed(by_prev.get(item.item_id, [])))
    ordered.extend(i for i in items if id(i) not in seen)  # a cycle would be a bug upstream; keep rows
    return ordered


def search_terms(text: str) -> list[str]:
    """The words of a search box, quoted phrases kept whole (as the admin splits them)."""
    terms = []
    for bit in smart_split(text):
        if bit[:1] in "\"'" and bit[-1:] == bit[:1] and len(bit) > 1:
            bit = unescape_string_literal(bit)
        if bit.strip():
            terms.append(bit.strip())
    return terms


# A search word naming more people than this is matched against sessions one by one (see search()).
FEW_PEOPLE = 20


class VoiceSessionQuerySet(models.QuerySet["VoiceSession"]):
    def search(self, text: str, *, user: Any = None) -> VoiceSessionQuerySet:
        """Sessions matching every word of `text`: a session id finds that session by its primary key;
        other words match the transcript (case-insensitive substring; a trigram index serves it on
        PostgreSQL), the exact call id and, unless `user` limits the search to theirs, the user's name
        or email.

        Each condition is a subquery on an indexed column rather than a join, so no row repeats and
        no DISTINCT is needed.
        """
        from django.contrib.auth import get_user_model

        queryset = self if user is None else self.filter(user=user)
        for term in search_terms(text):
            try:
                queryset = queryset.filter(pk=uuid.UUID(term))
                continue
            except ValueError:
                pass
            said = TranscriptItem.objects.filter(text__icontains=term)
            if user is not None:
                said = said.filter(session__user=user)  # the user's few sessions first, then their items
            # The other matches are looked up first and joined in only when there are some: a transcript
            # subquery alone is a semi-join the planner runs either way (newest sessions first for a
            # common word, the text index for a rare one); an OR beside it would read every session.
            others = VoiceSession.objects.filter(call_id=term)
            people_ids: list[int] = []
            if user is None:
                people = get_user_model().objects.filter(Q(username__icontains=term) | Q(email__icontains=term))
                people_ids = list(people.values_list("pk", flat=True)[:FEW_PEOPLE + 1])
            if len(people_ids) > FEW_PEOPLE:
                # A word naming many people matches most sessions: reading sessions newest first finds
                # a page at once, so test each against the people (whoever they are) and the rest.
                people_sessions = Q(user__in=people.values("pk"))
                queryset = queryset.filter(Q(pk__in=said.values("session_id")) | Q(call_id=term) | people_sessions)
                continue
            if people_ids:
                others = VoiceSession.objects.filter(Q(call_id=term) | Q(user_id__in=people_ids))
            ids = said.order_by().values("session_id")
            if others.exists():
                ids = ids.union(others.order_by().values("pk"))
            queryset = queryset.filter(pk__in=ids)
        return queryset

    def live(self) -> VoiceSessionQuerySet:
        return self.filter(status__in=[VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE])

    def for_user(self, user: Any) -> VoiceSessionQuerySet:
        return self.filter(user=user)

    def served(self, grace_seconds: float) -> VoiceSessionQuerySet:
        """Live sessions whose serving process renewed the heartbeat within the grace: what counts."""
        return self.live().filter(heartbeat_at__gte=timezone.now() - timedelta(seconds=grace_seconds))

    def unserved(self, grace_seconds: float) -> VoiceSessionQuerySet:
        """Live sessions no process has renewed for longer than the grace (their process died)."""
        return self.live().filter(heartbeat_at__lt=timezone.now() - timedelta(seconds=grace_seconds))


class VoiceSession(models.Model):
    """One voice conversation: from the websocket connect to the end, whatever ended it."""

    class Status(models.TextChoices):
        CONNECTING = "connecting", "Connecting"
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: session_user_started (user, -started_at) serves every lookup by user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="voice_sessions", db_index=False
    )
    config = models.ForeignKey(VoiceConfig, null=True, on_delete=models.SET_NULL, related_name="sessions")
    config_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=64, blank=True)
    # The config's call mode, copied when the session starts (voice.sessions.start_session). A row made
    # without one, like every session from before modes existed, is relay: the server owns no call for it.
    mode = models.CharField(max_length=8, choices=VoiceConfig.CallMode.choices, default=VoiceConfig.CallMode.RELAY)
    # Where the call went, fixed when the session starts: a process that adopts the call later (or hangs
    # it up) must reach the same service even if the config was switched since. No credential here.
    provider = models.CharField(max_length=8, default="openai", blank=True)
    # The config's protocol, copied when the session starts (realtime for every session from before GPT-Live).
    protocol = models.CharField(max_length=8, choices=VoiceConfig.Protocol.choices,
                                default=VoiceConfig.Protocol.REALTIME)
    api_base = models.CharField(max_length=200, blank=True, help_text="The Azure OpenAI API base, for Azure calls.")
    session_payload = models.JSONField(default=dict, blank=True, help_text="Exactly what OpenAI was sent.")
    max_duration_seconds = models.PositiveIntegerField(default=900, help_text="The cap this session runs under.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTING)
    call_id = models.CharField(max_length=128, blank=True)
    openai_session_id = models.CharField(max_length=128, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    turns = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    # Null: unpriced (the model, or a kind of token it used, has no ModelPrice); never a guess.
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True, default=Decimal("0"))
    # Renewed by the process serving the session (voice.recording's writer); a live session whose
    # heartbeat is older than VOICE_HEARTBEAT_GRACE_SECONDS has nobody serving it.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    # Server mode's ownership lease (voice.lease): the process holding the call's sideband, and a process
    # that asked to take it over (a browser resumed there). The holder renews heartbeat_at.
    served_by = models.CharField(max_length=64, blank=True)
    handoff_to = models.CharField(max_length=64, blank=True)
    # The user agreed, before the call, to its audio being recorded (voice/call_audio.py): no upload
    # is accepted without it.
    recording_consent = models.BooleanField(default=False)

    objects = VoiceSessionQuerySet.as_manager()
    # Not a column: set only on the sessions an export loads, by timeline.export_related()'s
    # Prefetch(to_attr="timing_events"); read by timeline.build_prefetched.
    timing_events: list[SessionEvent]

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["user", "-started_at"], name="session_user_started"),
            models.Index(fields=["status", "-started_at"], name="session_status_started"),
            models.Index(fields=["-started_at"], name="session_started"),
            models.Index(fields=["call_id"], name="session_call_id"),
            # Only live rows (a handful) are indexed: the per-user limit and the sweep of unserved
            # sessions read these at every session start and every heartbeat.
            models.Index(fields=["user", "heartbeat_at"], name="session_live_user_heartbeat",
                         condition=Q(status__in=["connecting", "active"])),
            models.Index(fields=["heartbeat_at"], name="session_live_heartbeat",
                         condition=Q(status__in=["connecting", "active"])),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.started_at:%Y-%m-%d %H:%M} · {self.status}"

    def get_absolute_url(self) -> str:
        return reverse("voice:session_detail", args=[self.pk])

    @classmethod
    def end_unserved(cls, grace_seconds: float, *, user: Any = None, reason: str = "server_lost") -> int:
        """End live sessions that no process serves any more (heartbeat older than the grace).

        They end when they were last known served, their last heartbeat. A process that still serves
        one of them (it was only cut off from the database for longer than the grace) revives it at its
        next heartbeat (voice.recording), so this can never end a conversation that is still going on.
        """
        # A server-mode call OpenAI still runs (its id is known) is not ended: a serving process adopts it
        # (voice.live), re-attaches its sideband, and the resume grace decides its end.
        stale = cls.objects.unserved(grace_seconds).exclude(Q(mode=VoiceConfig.CallMode.SERVER) & ~Q(call_id=""))
        if user is not None:
            stale = stale.filter(user=user)
        return stale.update(status=cls.Status.ENDED, ended_at=models.F("heartbeat_at"), end_reason=reason)

    @classmethod
    def renew_heartbeats(cls, session_ids: list[str], holder: str | None = None) -> int:
        """The serving process says it still serves these sessions: one UPDATE for all of them.

        A session another process ended as `server_lost` while this one was cut off from the database
        (longer than the grace) is still being served: it is brought back to life. With `holder` (the
        process's lease token), a server-mode session is renewed only while this process holds its lease.
        """
        if not session_ids:
            return 0
        now = timezone.now()
        mine = cls.objects.filter(pk__in=session_ids)
        if holder is not None:
            mine = mine.filter(Q(mode=VoiceConfig.CallMode.RELAY) | Q(served_by=holder))
        renewed = mine.live().update(heartbeat_at=now)
        revived = mine.filter(status=cls.Status.ENDED, end_reason="server_lost").update(
            status=cls.Status.ACTIVE, ended_at=None, end_reason="", heartbeat_at=now
        )
        return renewed + revived

    @classmethod
    def leases_to_give_up(cls, session_ids: list[str], holder: str) -> list[str]:
        """Server-mode sessions among these that this process must stop serving: another process asked to
        take one over (a browser resumed there), or holds it now, or it ended."""
        if not session_ids:
            return []
        rows = cls.objects.filter(pk__in=session_ids, mode=VoiceConfig.CallMode.SERVER).exclude(
            served_by=holder, handoff_to="", status__in=[cls.Status.CONNECTING, cls.Status.ACTIVE])
        return [str(pk) for pk in rows.values_list("pk", flat=True)]

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.CONNECTING, self.Status.ACTIVE)

    @property
    def duration_seconds(self) -> float | None:
        end = self.ended_at or (timezone.now() if self.is_live else None)
        return (end - self.started_at).total_seconds() if end else None

    def ordered_transcript(self) -> list[TranscriptItem]:
        """Items in conversation order: follow the previous_item_id chain, not arrival order.

        Uses the prefetched items when there are some (exports prefetch them per chunk of sessions).
        """
        return order_by_chain(self.transcript_items.all())

    def transcript_page(self, number: Any, per_page: int = 100) -> Page:
        """One page of the transcript, in conversation order within the page.

        Pages are cut in creation order (the (session, created_at, id) index), so a page costs the
        same whatever the transcript's length. An input transcription created after the reply to it
        is placed after its predecessor when both are on the page, else where it was created.
        """
        paginator = Paginator(self.transcript_items.order_by("created_at", "id"), per_page)
        page = paginator.get_page(number)
        page.object_list = order_by_chain(page.object_list)
        return page

    def transcript_tail(self, count: int) -> tuple[list[TranscriptItem], int]:
        """The latest `count` items in conversation order, and how many earlier ones were left out."""
        latest = list(self.transcript_items.order_by("-created_at", "-id")[:count])
        earlier = 0
        if len(latest) == count:
            earlier = self.transcript_items.count() - count
        return order_by_chain(latest), earlier

    def transcript_text(self) -> str:
        """The whole transcript as plain text, in the record's words (the admin's export)."""
        return transcripts.plain_text(self.ordered_transcript())

    def to_dict(self) -> SessionSummary:
        return {
            "id": str(self.pk),
            "user": self.user.get_username(),
            "config": self.config_name,
            "model": self.model,
            "status": self.status,
            "call_id": self.call_id,
            "started_at": self.started_at.isoformat(),
            "connected_at": self.connected_at.isoformat() if self.connected_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "end_reason": self.end_reason,
            "turns": self.turns,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": None if self.cost_usd is None else f"{self.cost_usd:.6f}",  # None: unpriced
        }


class SessionSummary(TypedDict):
    id: str
    user: str
    config: str
    model: str
    status: str
    call_id: str
    started_at: str
    connected_at: str | None
    ended_at: str | None
    end_reason: str
    turns: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: str | None


class SessionEvent(models.Model):
    """Append-only log of every frame of a session, in both directions."""

    class Direction(models.TextChoices):
        # OpenAI's frames, whichever connection carried them (see origin).
        FROM_OPENAI = "from_openai", "from OpenAI"
        TO_OPENAI = "to_openai", "to OpenAI"
        # The project's ag2.* frames between the browser and this server.
        FROM_BROWSER = "from_browser", "from browser"
        TO_BROWSER = "to_browser", "to browser"
        INTERNAL = "internal", "internal"

    class Origin(models.TextChoices):
        """The connection a frame was logged on: where it was heard, not who wrote it."""

        SIDEBAND = "sideband", "sideband"  # the server's own socket to the call (server mode)
        BROWSER = "browser", "browser"  # the browser's websocket (relayed OpenAI frames, ag2.* frames)
        SERVER = "server", "server"  # no connection: the server's own notes

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    direction = models.CharField(max_length=16, choices=Direction.choices)
    # Blank for rows logged before origins were recorded.
    origin = models.CharField(max_length=16, choices=Origin.choices, blank=True, default="")
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # By column, not by relation: ordering by "session" would join the parent and sort by its start.
        ordering = ["session_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="event_session_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.direction}{f' ({self.origin})' if self.origin else ''} {self.type}"


class TranscriptItem(models.Model):
    """One conversation item, assembled by item_id from however many events describe it."""

    class Role(models.TextChoices):
        USER = "user", "user"
        ASSISTANT = "assistant", "assistant"
        SYSTEM = "system", "system"

    class Kind(models.TextChoices):
        MESSAGE = "message", "message"
        FUNCTION_CALL = "function_call", "function call"
        FUNCTION_CALL_OUTPUT = "function_call_output", "function call output"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"
        TRUNCATED = "truncated", "truncated"
        FAILED = "failed", "failed"

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="transcript_items", db_index=False)
    item_id = models.CharField(max_length=128)
    previous_item_id = models.CharField(max_length=128, blank=True)
    response_id = models.CharField(max_length=128, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.MESSAGE)
    name = models.CharField(max_length=128, blank=True, help_text="Tool name, for function calls.")
    text = models.TextField(blank=True)
    text_truncated = models.BooleanField(
        default=False, help_text="The text grew past what one item (or the session) may record; the rest was cut.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    audio_start_ms = models.PositiveIntegerField(null=True, blank=True)
    audio_end_ms = models.PositiveIntegerField(null=True, blank=True)
    # The model's lines: when its first audio (or audio transcript) delta arrived. Where OpenAI sends no
    # output_audio_buffer.started, this places the line on the recording (voice/timeline.py).
    first_audio_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session_id", "created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["session", "item_id"], name="transcript_session_item")]
        # Pages of a transcript are read in this order; the text search index (PostgreSQL only) is
        # made by a migration, since SQLite has no trigram index.
        indexes = [models.Index(fields=["session", "created_at", "id"], name="transcript_session_created")]

    def __str__(self) -> str:
        return f"{self.role or self.kind}: {self.text[:60]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "previous_item_id": self.previous_item_id,
            "role": self.role,
            "kind": self.kind,
            "name": self.name,
            "text": self.text,
            "text_truncated": self.text_truncated,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
        }


# A tool call as the dashboard (snapshot and live frames), the admin's export and the user's download
# show it (``ToolCall.to_dict``); the Recorder publishes the same fields of the calls it has not written yet.
TOOL_CALL_FIELDS = ("call_id", "name", "arguments", "output", "status", "started_at", "duration_ms")


class ToolCall(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        TIMED_OUT = "timed_out", "timed out"
        REJECTED = "rejected", "rejected"

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="tool_calls", db_index=False)
    call_id = models.CharField(max_length=128)
    item_id = models.CharField(max_length=128, blank=True)
    name = models.CharField(max_length=128)
    arguments = models.JSONField(default=dict, blank=True)
    output = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["session_id", "started_at"]
        constraints = [models.UniqueConstraint(fields=["session", "call_id"], name="toolcall_session_call")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    def to_dict(self, *, for_download: bool = False) -> dict[str, Any]:
        """The fields of ``TOOL_CALL_FIELDS``, ready for JSON. ``for_download``: as the user's own download
        has it, without OpenAI's call id (the record's ids stay out of it) and with the status in words."""
        fields = {
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "output": self.output,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
        }
        if for_download:
            del fields["call_id"]
            fields["status"] = self.get_status_display()
        return fields


class ResponseUsage(models.Model):
    """One row per response.done, with its token counts by kind and what it cost."""

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="usages", db_index=False)
    response_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=64, blank=True)
    total_tokens = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    input_text_tokens = models.PositiveBigIntegerField(default=0)
    input_audio_tokens = models.PositiveBigIntegerField(default=0)
    input_image_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cached_text_tokens = models.PositiveBigIntegerField(default=0)
    cached_audio_tokens = models.PositiveBigIntegerField(default=0)
    output_text_tokens = models.PositiveBigIntegerField(default=0)
    output_audio_tokens = models.PositiveBigIntegerField(default=0)
    # GPT-Live bills session time, not tokens: the seconds this row adds (active, and standby if ever
    # reported apart), priced per minute (MinutePrice).
    voice_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("0"))
    standby_seconds = models.DecimalField(max_digits=12, decimal_places=3, default=Decimal("0"))
    # Null: unpriced (the model, or a kind of token it used, has no ModelPrice); never a guess.
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True, default=Decimal("0"))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session_id", "created_at"]
        constraints = [models.UniqueConstraint(fields=["session", "response_id"], name="usage_session_response")]

    def __str__(self) -> str:
        cost = "unpriced" if self.cost_usd is None else f"${self.cost_usd}"
        return f"{self.response_id}: {self.total_tokens} tokens, {cost}"


class ModelPrice(models.Model):
    """Published prices in USD per million tokens. Editable, because OpenAI changes them."""

    model = models.CharField(max_length=64, unique=True)
    text_input = models.DecimalField(max_digits=10, decimal_places=4)
    text_cached_input = models.DecimalField(max_digits=10, decimal_places=4)
    text_output = models.DecimalField(max_digits=10, decimal_places=4)
    audio_input = models.DecimalField(max_digits=10, decimal_places=4)
    audio_cached_input = models.DecimalField(max_digits=10, decimal_places=4)
    audio_output = models.DecimalField(max_digits=10, decimal_places=4)
    # Image input is priced for some models only; blank means unpublished, and a response with image
    # tokens is then recorded as unpriced rather than billed at a guess.
    image_input = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    image_cached_input = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def cost(
        self,
        *,
        input_text: int,
        input_audio: int,
        cached_text: int,
        cached_audio: int,
        output_text: int,
        output_audio: int,
        input_image: int = 0,
        cached_image: int = 0,
    ) -> Decimal:
        """Cost of one response. Cached tokens are a subset of input tokens, billed at the cached rate.

        Image tokens need an image price (``voice.pricing.cost_of`` records them as unpriced without one);
        a missing cached image price bills cached image tokens at the full image rate.
        """
        uncached_text = max(input_text - cached_text, 0)
        uncached_audio = max(input_audio - cached_audio, 0)
        total = (
            uncached_text * self.text_input
            + cached_text * self.text_cached_input
            + output_text * self.text_output
            + uncached_audio * self.audio_input
            + cached_audio * self.audio_cached_input
            + output_audio * self.audio_output
        )
        if input_image and self.image_input is not None:
            image_cached_rate = self.image_cached_input if self.image_cached_input is not None else self.image_input
            cached_image = min(cached_image, input_image)
            total += (input_image - cached_image) * self.image_input + cached_image * image_cached_rate
        return (Decimal(total) / MILLION).quantize(Decimal("0.000001"))


class CallRecording(models.Model):
    """A call's audio, both sides in stereo (the user left, the model right), stored a chunk at a time
    through the "recordings" storage: Opus/WebM as the browser recorded it (voice/call_audio.py), or, for
    a GPT-Live call, WAV assembled on the server from the sideband's copies (voice/live_audio.py)."""

    session = models.OneToOneField(VoiceSession, on_delete=models.CASCADE, primary_key=True,
                                   related_name="recording")
    # Where the recording starts on the session's clock: milliseconds after the call connected
    # (VoiceSession.connected_at). Transcript positions are placed on the recording with it.
    offset_ms = models.IntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0, help_text="Chunks stored; the next one expected.")
    size_bytes = models.PositiveBigIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0, help_text="As the recorder measured it.")
    content_type = models.CharField(max_length=32, default="audio/webm",
                                    help_text="audio/webm from the browser, audio/wav from the server.")
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    delete_after = models.DateTimeField(help_text="The retention period ends here (manage.py purge_recordings).")

    class Meta:
        indexes = [models.Index(fields=["delete_after"], name="recording_delete_after")]

    def __str__(self) -> str:
        return f"Recording of {self.session_id}"


class RecordingChunk(models.Model):
    """One uploaded piece of a recording, stored as its own file: idempotent by (recording, index)."""

    recording = models.ForeignKey(CallRecording, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    name = models.CharField(max_length=255, help_text="The file's name in the recordings storage.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["recording", "index"], name="one_chunk_per_index")]
        ordering = ["recording", "index"]

    def __str__(self) -> str:
        return f"Chunk {self.index} of {self.recording_id}"


class MinutePrice(models.Model):
    """Published prices in USD per minute of session, for models billed by time (GPT-Live, per second used).
    Editable like ModelPrice. Standby (gpt-live-1.1, WebRTC, inference paused) has its own rate; blank
    bills standby seconds at the active rate."""

    model = models.CharField(max_length=64, unique=True)
    active_per_minute = models.DecimalField(max_digits=10, decimal_places=4)
    standby_per_minute = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def time_cost(self, active_seconds: Decimal, standby_seconds: Decimal = Decimal(0)) -> Decimal:
        """Cost of session time, unrounded."""
        standby_rate = self.standby_per_minute if self.standby_per_minute is not None else self.active_per_minute
        return (active_seconds * self.active_per_minute + standby_seconds * standby_rate) / SIXTY
