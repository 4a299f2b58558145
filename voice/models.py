"""The voice app's data: what operators configure and what every session leaves behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypedDict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify, smart_split, unescape_string_literal
from simple_history.models import HistoricalRecords

# The GA voices (PROTOCOL.md). `voice` can change only before the first audio output.
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
REALTIME_MODELS = (
    "gpt-realtime",
    "gpt-realtime-mini",
    "gpt-realtime-1.5",
    "gpt-realtime-2",
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
)
TRANSCRIPTION_MODELS = ("gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1")
MILLION = Decimal(1_000_000)


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, v) for v in values]


def tool_name_choices() -> list[str]:
    # Imported lazily: voice.tools may import models for its own tools.
    from voice.tools import tool_names

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

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True, blank=True)
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive configs cannot start new sessions.")
    is_default = models.BooleanField(default=False, help_text="Used when a session names no config.")

    model = models.CharField(max_length=64, choices=_choices(REALTIME_MODELS), default="gpt-realtime")
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
        choices=_choices(TRANSCRIPTION_MODELS),
        blank=True,
        default="gpt-4o-mini-transcribe",
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

    def turn_detection_payload(self) -> dict[str, Any] | None:
        if self.turn_detection == self.TurnDetection.SERVER_VAD:
            return {
                "type": "server_vad",
                "threshold": self.vad_threshold,
                "prefix_padding_ms": self.vad_prefix_padding_ms,
                "silence_duration_ms": self.vad_silence_duration_ms,
            }
        if self.turn_detection == self.TurnDetection.SEMANTIC_VAD:
            return {"type": "semantic_vad", "eagerness": self.vad_eagerness}
        return None

    def tool_definitions(self) -> list[dict[str, Any]]:
        from voice.tools import get_tool

        return [get_tool(name).definition() for name in self.tools]

    def to_session_payload(self) -> dict[str, Any]:
        """The GA session object (PROTOCOL.md) this config starts sessions with."""
        audio_input: dict[str, Any] = {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": self.turn_detection_payload(),
            "noise_reduction": {"type": self.noise_reduction} if self.noise_reduction else None,
        }
        if self.input_transcription_model:
            audio_input["transcription"] = {"model": self.input_transcription_model}
        payload: dict[str, Any] = {
            "type": "realtime",
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": [self.output_modality],
            "audio": {
                "input": audio_input,
                "output": {"voice": self.voice, "speed": self.speed},
            },
            "tools": self.tool_definitions(),
            "tool_choice": "auto",
            "max_output_tokens": self.max_output_tokens if self.max_output_tokens else "inf",
        }
        return payload


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
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))

    objects = VoiceSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["user", "-started_at"], name="session_user_started"),
            models.Index(fields=["status", "-started_at"], name="session_status_started"),
            models.Index(fields=["-started_at"], name="session_started"),
            models.Index(fields=["call_id"], name="session_call_id"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.started_at:%Y-%m-%d %H:%M} · {self.status}"

    def get_absolute_url(self) -> str:
        return reverse("voice:session_detail", args=[self.pk])

    @classmethod
    def end_stale(cls, *, older_than_seconds: int = 0, reason: str = "server_restart") -> int:
        """End sessions left live by a process that died without ending them."""
        cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
        return cls.objects.live().filter(started_at__lte=cutoff).update(
            status=cls.Status.ENDED, ended_at=timezone.now(), end_reason=reason
        )

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
        lines = []
        for item in self.ordered_transcript():
            if item.kind == TranscriptItem.Kind.MESSAGE:
                marker = " [interrupted]" if item.status == TranscriptItem.Status.TRUNCATED else ""
                lines.append(f"{item.role}: {item.text}{marker}")
            elif item.kind == TranscriptItem.Kind.FUNCTION_CALL:
                lines.append(f"tool call {item.name}({item.text})")
            else:
                lines.append(f"tool output: {item.text}")
        return "\n".join(lines)

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
            "cost_usd": f"{self.cost_usd:.6f}",
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
    cost_usd: str


class SessionEvent(models.Model):
    """Append-only log of every frame of a session, in both directions."""

    class Direction(models.TextChoices):
        FROM_BROWSER = "from_browser", "from browser"
        TO_BROWSER = "to_browser", "to browser"
        INTERNAL = "internal", "internal"

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    direction = models.CharField(max_length=16, choices=Direction.choices)
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # By column, not by relation: ordering by "session" would join the parent and sort by its start.
        ordering = ["session_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="event_session_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.direction} {self.type}"


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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    audio_start_ms = models.PositiveIntegerField(null=True, blank=True)
    audio_end_ms = models.PositiveIntegerField(null=True, blank=True)
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
            "status": self.status,
            "created_at": self.created_at.isoformat(),
        }


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


class ResponseUsage(models.Model):
    """One row per response.done, with its token counts by kind and what it cost."""

    # No index of its own: the composite constraint/index below leads with session and serves it.
    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="usages", db_index=False)
    response_id = models.CharField(max_length=128)
    status = models.CharField(max_length=16, blank=True)
    model = models.CharField(max_length=64, blank=True)
    total_tokens = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    input_image_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cached_text_tokens = models.PositiveIntegerField(default=0)
    cached_audio_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal("0"))
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session_id", "created_at"]
        constraints = [models.UniqueConstraint(fields=["session", "response_id"], name="usage_session_response")]

    def __str__(self) -> str:
        return f"{self.response_id}: {self.total_tokens} tokens, ${self.cost_usd}"


class ModelPrice(models.Model):
    """Published prices in USD per million tokens. Editable, because OpenAI changes them."""

    model = models.CharField(max_length=64, unique=True)
    text_input = models.DecimalField(max_digits=10, decimal_places=4)
    text_cached_input = models.DecimalField(max_digits=10, decimal_places=4)
    text_output = models.DecimalField(max_digits=10, decimal_places=4)
    audio_input = models.DecimalField(max_digits=10, decimal_places=4)
    audio_cached_input = models.DecimalField(max_digits=10, decimal_places=4)
    audio_output = models.DecimalField(max_digits=10, decimal_places=4)
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
    ) -> Decimal:
        """Cost of one response. Cached tokens are a subset of input tokens, billed at the cached rate."""
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
        return (Decimal(total) / MILLION).quantize(Decimal("0.000001"))
