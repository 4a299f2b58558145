"""Admin: operators edit configs; admins review sessions, transcripts, tool calls and cost."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from voice import catalog
from voice.models import (
    ModelPrice,
    ResponseUsage,
    SessionEvent,
    ToolCall,
    TranscriptItem,
    VoiceConfig,
    VoiceSession,
    tool_name_choices,
)


class ListField(forms.CharField):
    """A list of short strings typed one per line (commas also separate), stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [part.strip() for line in text.splitlines() for part in line.split(",") if part.strip()]


class VoiceConfigForm(forms.ModelForm):
    # A checkbox per registered tool: operators pick from what exists rather than typing names.
    tools = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, choices=())
    transcription_languages = ListField(required=False, help_text=VoiceConfig._meta.get_field(
        "transcription_languages").help_text)
    transcription_keywords = ListField(required=False, help_text=VoiceConfig._meta.get_field(
        "transcription_keywords").help_text)
    mcp_allowed_tools = ListField(required=False, help_text=VoiceConfig._meta.get_field(
        "mcp_allowed_tools").help_text)
    mcp_server_url = forms.URLField(required=False, max_length=500, assume_scheme="https",
                                    help_text=VoiceConfig._meta.get_field("mcp_server_url").help_text)

    class Meta:
        model = VoiceConfig
        fields = (
            "name", "slug", "description", "is_active", "is_default", "model", "voice", "custom_voice_id", "speed",
            "output_modality", "instructions", "max_output_tokens", "reasoning_effort", "parallel_tool_calls",
            "truncation", "truncation_retention_ratio", "truncation_token_limit", "turn_detection", "vad_threshold",
            "vad_prefix_padding_ms", "vad_silence_duration_ms", "vad_eagerness", "vad_idle_timeout_ms",
            "input_transcription_model", "transcription_languages", "transcription_keywords", "transcription_delay",
            "noise_reduction", "noise_reduction_strength", "tools", "mcp_server_label", "mcp_server_url",
            "mcp_allowed_tools", "mcp_require_approval", "mcp_credential_env", "secret_lifetime_seconds",
            "max_session_seconds",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tools"].choices = [(name, name) for name in tool_name_choices()]
        # Offer what can be chosen today, retiring models with their date; a config already on a shut-down
        # model keeps it listed, so the form shows it (and the error that says what to pick instead).
        today = catalog.today()
        for field, kind in (("model", "realtime"), ("input_transcription_model", "transcription")):
            options = catalog.selectable(kind, today)  # type: ignore[arg-type]
            current = getattr(self.instance, field, "")
            if current and current not in dict(options):
                options.append((current, f"{current} (shut down)"))
            if field == "input_transcription_model":
                options.insert(0, ("", "Off (no user transcript)"))
            self.fields[field].choices = options


@admin.register(VoiceConfig)
class VoiceConfigAdmin(SimpleHistoryAdmin):
    form = VoiceConfigForm
    list_display = ("name", "slug", "model", "retirement", "voice", "output_modality", "turn_detection", "is_active",
                    "is_default", "updated_at", "updated_by")
    list_filter = ("is_active", "is_default", "model", "voice")
    search_fields = ("name", "slug", "instructions")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("retirement", "created_at", "updated_at", "updated_by", "session_payload_preview")
    fieldsets = (
        (None, {"fields": ("retirement", "name", "slug", "description", "is_active", "is_default")}),
        ("Model and voice", {"fields": ("model", "voice", "custom_voice_id", "speed", "output_modality",
                                        "instructions", "max_output_tokens")}),
        ("Reasoning and context", {"fields": ("reasoning_effort", "parallel_tool_calls", "truncation",
                                              "truncation_retention_ratio", "truncation_token_limit")}),
        ("Listening", {"fields": ("turn_detection", "vad_threshold", "vad_prefix_padding_ms",
                                  "vad_silence_duration_ms", "vad_eagerness", "vad_idle_timeout_ms",
                                  "noise_reduction", "noise_reduction_strength")}),
        ("User transcript", {"fields": ("input_transcription_model", "transcription_languages",
                                        "transcription_keywords", "transcription_delay")}),
        ("Tools", {"fields": ("tools",)}),
        ("Remote MCP server", {"fields": ("mcp_server_label", "mcp_server_url", "mcp_allowed_tools",
                                          "mcp_require_approval", "mcp_credential_env")}),
        ("Limits", {"fields": ("secret_lifetime_seconds", "max_session_seconds")}),
        ("Audit", {"fields": ("created_at", "updated_at", "updated_by", "session_payload_preview")}),
    )

    @admin.display(description="Model retirement")
    def retirement(self, obj: VoiceConfig) -> str:
        notice = obj.retirement_notice() if obj.pk else ""
        if not notice:
            return "—"
        return format_html('<strong class="retirement-warning">⚠ {}</strong>', notice)

    @admin.display(description="Session payload sent to OpenAI")
    def session_payload_preview(self, obj: VoiceConfig) -> str:
        if not obj.pk:
            return "—"
        # No MCP credential in here: it is added from the server's environment only when a call starts.
        return format_html("<pre>{}</pre>", json.dumps(obj.to_session_payload(), indent=2))

    def save_model(self, request: HttpRequest, obj: VoiceConfig, form: Any, change: bool) -> None:
        obj.updated_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ToolCallInline(ReadOnlyInline):
    model = ToolCall
    fields = ("name", "call_id", "arguments", "output", "status", "started_at", "duration_ms")
    readonly_fields = fields


def _cost(cost: Any) -> str:
    """A cost for the admin: null means the model had no price, which must stand out, not read as $0."""
    if cost is None:
        return format_html('<span class="unpriced" title="{}">unpriced</span>',
                           "No ModelPrice for this model: add one to record its cost.")
    return f"{cost:.6f}"


class ResponseUsageInline(ReadOnlyInline):
    model = ResponseUsage
    fields = ("response_id", "status", "input_text_tokens", "input_audio_tokens", "cached_tokens",
              "output_text_tokens", "output_audio_tokens", "total_tokens", "cost", "created_at")
    readonly_fields = fields

    @admin.display(description="Cost (USD)")
    def cost(self, obj: ResponseUsage) -> str:
        return _cost(obj.cost_usd)


class SessionDateFilter(admin.DateFieldListFilter):
    pass


def _export(queryset: QuerySet[VoiceSession], fmt: str) -> HttpResponse:
    sessions = queryset.select_related("user").prefetch_related("transcript_items", "tool_calls", "usages")
    if fmt == "json":
        data = [
            {
                **s.to_dict(),
                "transcript": [i.to_dict() for i in s.ordered_transcript()],
                "tool_calls": [
                    {"call_id": t.call_id, "name": t.name, "arguments": t.arguments, "output": t.output,
                     "status": t.status, "duration_ms": t.duration_ms}
                    for t in s.tool_calls.all()
                ],
            }
            for s in sessions
        ]
        response = HttpResponse(json.dumps(data, indent=2), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="transcripts.json"'
        return response
    blocks = [
        f"Session {s.pk}\nUser: {s.user.get_username()}\nConfig: {s.config_name}\n"
        f"Started: {s.started_at:%Y-%m-%d %H:%M:%S %Z}\n"
        f"Status: {s.status} {s.end_reason}\n\n{s.transcript_text()}\n"
        for s in sessions
    ]
    response = HttpResponse(("\n" + "=" * 60 + "\n").join(blocks), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="transcripts.txt"'
    return response


@admin.register(VoiceSession)
class VoiceSessionAdmin(admin.ModelAdmin):
    list_display = ("started_at", "user", "config_name", "model", "status", "end_reason", "turns",
                    "total_tokens", "cost")
    list_filter = ("status", "config", "model", ("started_at", SessionDateFilter))
    search_fields = ("user__username", "user__email", "=id", "call_id", "transcript_items__text")
    date_hierarchy = "started_at"
    list_select_related = ("user",)
    show_full_result_count = False
    inlines = (ToolCallInline, ResponseUsageInline)
    actions = ("export_json", "export_text")
    readonly_fields = ("id", "user", "config", "config_name", "model", "status", "call_id", "openai_session_id",
                       "started_at", "connected_at", "ended_at", "end_reason", "error", "turns", "input_tokens",
                       "output_tokens", "total_tokens", "cost", "transcript", "session_payload_pretty")
    fieldsets = (
        (None, {"fields": ("id", "user", "config", "config_name", "model", "status", "end_reason", "error")}),
        ("Transcript", {"fields": ("transcript",)}),
        ("Timing and call", {"fields": ("started_at", "connected_at", "ended_at", "call_id",
                                        "openai_session_id")}),
        ("Usage", {"fields": ("turns", "input_tokens", "output_tokens", "total_tokens", "cost")}),
        ("Session payload", {"classes": ("collapse",), "fields": ("session_payload_pretty",)}),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A search across transcript text joins many rows per session; de-duplicate explicitly.
        qs, _ = super().get_search_results(request, queryset, search_term)
        return qs.distinct(), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Cost (USD)", ordering="cost_usd")
    def cost(self, obj: VoiceSession) -> str:
        return _cost(obj.cost_usd)

    @admin.display(description="Transcript")
    def transcript(self, obj: VoiceSession) -> str:
        items = obj.ordered_transcript()
        if not items:
            return "No transcript recorded."
        rows = []
        for item in items:
            if item.kind == TranscriptItem.Kind.MESSAGE:
                who = item.role
                text = item.text or "…"
            elif item.kind == TranscriptItem.Kind.FUNCTION_CALL:
                who, text = "tool call", f"{item.name}({item.text})"
            else:
                who, text = "tool output", item.text
            note = " (interrupted)" if item.status == TranscriptItem.Status.TRUNCATED else ""
            note += " (text cut: too long to record)" if item.text_truncated else ""
            rows.append((item.role or "tool", who, text, note))
        return format_html(
            '<div class="voice-transcript">{}</div>',
            format_html_join(
                "",
                '<p class="turn turn-{}"><strong>{}:</strong> {}<em>{}</em></p>',
                rows,
            ),
        )

    @admin.display(description="Session payload")
    def session_payload_pretty(self, obj: VoiceSession) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.session_payload, indent=2))

    @admin.action(description="Export selected transcripts as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[VoiceSession]) -> HttpResponse:
        return _export(queryset, "json")

    @admin.action(description="Export selected transcripts as plain text")
    def export_text(self, request: HttpRequest, queryset: QuerySet[VoiceSession]) -> HttpResponse:
        return _export(queryset, "text")


class FixedCountPaginator(Paginator):
    """The event log grows without bound; never run COUNT(*) over it just to draw page links."""

    @cached_property
    def count(self) -> int:
        return 10_000


@admin.register(SessionEvent)
class SessionEventAdmin(admin.ModelAdmin):
    list_display = ("session_id", "seq", "direction", "type", "created_at")
    list_filter = ("direction",)
    search_fields = ("=session__id", "type")
    paginator = FixedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("session",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model", "text_input", "text_cached_input", "text_output", "audio_input",
                    "audio_cached_input", "audio_output", "image_input", "image_cached_input", "retirement",
                    "updated_at")
    search_fields = ("model",)

    @admin.display(description="Model retirement")
    def retirement(self, obj: ModelPrice) -> str:
        return catalog.retirement_notice(obj.model, catalog.today()) or "—"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Say which selectable models have no price: their sessions are recorded as unpriced.
        priced = set(ModelPrice.objects.values_list("model", flat=True))
        unpriced = [name for name in catalog.names("realtime") if name not in priced]
        if unpriced and request.method == "GET":
            messages.warning(request, f"No price for {', '.join(unpriced)}: sessions on these models are "
                                      "recorded as unpriced (no cost). Add a price once OpenAI publishes one.")
        return super().changelist_view(request, extra_context)
