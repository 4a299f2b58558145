"""Admin: operators edit configs; admins review sessions, transcripts, tool calls and cost."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any, cast

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from voice import catalog, providers, timeline, transcripts
from voice.models import (
    REALTIME_MODELS,
    CallRecording,
    MinutePrice,
    ModelPrice,
    ResponseUsage,
    SessionEvent,
    ToolCall,
    TranscriptItem,
    VoiceConfig,
    VoiceSession,
    VoiceSessionQuerySet,
    tool_name_choices,
)
from voice.paging import AppendOnlyPaginator, LargeTablePaginator, page_query
from voice.templatetags.voice_format import clock, seconds

# The admin lists this many turns of a recorded session's timeline; the export holds them all.
ADMIN_REPLAY_TURNS = 100


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
    azure_endpoint = forms.URLField(required=False, max_length=200, assume_scheme="https",
                                    help_text=VoiceConfig._meta.get_field("azure_endpoint").help_text)

    class Meta:
        model = VoiceConfig
        fields = (
            "name", "slug", "description", "is_active", "is_default", "call_mode", "protocol", "live_model",
            "live_voice", "live_delegation", "live_responses_model", "live_responses_instructions", "live_backend_tool",
            "live_transcript_gap_ms", "model", "voice", "custom_voice_id",
            "speed",
            "output_modality", "instructions", "max_output_tokens", "reasoning_effort", "parallel_tool_calls",
            "truncation", "truncation_retention_ratio", "truncation_token_limit", "turn_detection", "vad_threshold",
            "vad_prefix_padding_ms", "vad_silence_duration_ms", "vad_eagerness", "vad_idle_timeout_ms",
            "input_transcription_model", "transcription_languages", "transcription_keywords", "transcription_delay",
            "noise_reduction", "noise_reduction_strength", "tools", "mcp_server_label", "mcp_server_url",
            "mcp_allowed_tools", "mcp_require_approval", "mcp_credential_env", "secret_lifetime_seconds",
            "max_session_seconds", "provider", "azure_endpoint", "azure_deployment",
        )

    # GPT-Live's fields: a form posted without them (a script, an older page) keeps what the config has.
    KEPT_WHEN_ABSENT = ("protocol", "live_model", "live_voice", "live_delegation", "live_transcript_gap_ms")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.KEPT_WHEN_ABSENT:
            self.fields[name].required = False
        cast(forms.ChoiceField, self.fields["tools"]).choices = [(name, name) for name in tool_name_choices()]
        # Offer what can be chosen today, retiring models with their date; a config already on a shut-down
        # model keeps it listed, so the form shows it (and the error that says what to pick instead).
        today = catalog.today()
        offered: tuple[tuple[str, catalog.Kind], ...] = (
            ("model", "realtime"), ("input_transcription_model", "transcription"))
        for field, kind in offered:
            options = catalog.selectable(kind, today)
            current = getattr(self.instance, field, "")
            if current and current not in dict(options):
                options.append((current, f"{current} (shut down)"))
            if field == "input_transcription_model":
                options.insert(0, ("", "Off (no user transcript)"))
            cast(forms.ChoiceField, self.fields[field]).choices = options

    def clean(self) -> dict[str, Any]:
        # A ModelForm's clean() returns cleaned_data; the stubs type it Optional (a Form's may return None).
        super().clean()
        data = self.cleaned_data
        for name in self.KEPT_WHEN_ABSENT:
            if data.get(name) in (None, ""):
                data[name] = getattr(self.instance, name)
        return data


@admin.register(VoiceConfig)
class VoiceConfigAdmin(SimpleHistoryAdmin):
    form = VoiceConfigForm
    list_display = ("name", "slug", "call_mode", "protocol", "model", "retirement", "voice", "output_modality",
                    "turn_detection", "is_active",
                    "is_default", "updated_at", "updated_by")
    list_filter = ("is_active", "is_default", "call_mode", "protocol", "model", "voice")
    search_fields = ("name", "slug", "instructions")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("retirement", "provider_status", "created_at", "updated_at", "updated_by",
                       "session_payload_preview")
    fieldsets = (
        (None, {"fields": ("retirement", "name", "slug", "description", "is_active", "is_default", "call_mode",
                           "protocol")}),
        ("GPT-Live", {"fields": ("live_model", "live_voice", "live_delegation", "live_responses_model",
                                 "live_responses_instructions", "live_backend_tool", "live_transcript_gap_ms"),
                      "description": "Used when the protocol is GPT-Live; the instructions, custom voice and tools "
                                     "below apply to both protocols."}),
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
        ("Voice service", {"fields": ("provider", "provider_status", "azure_endpoint", "azure_deployment")}),
        ("Limits", {"fields": ("secret_lifetime_seconds", "max_session_seconds")}),
        ("Audit", {"fields": ("created_at", "updated_at", "updated_by", "session_payload_preview")}),
    )

    @admin.display(description="On this server")
    def provider_status(self, obj: VoiceConfig) -> str:
        """Whether this server has what the config's provider needs (read from its environment)."""
        problem = providers.problems(obj)
        service = providers.service_name(providers.kind_of(obj))
        if problem:
            return format_html('<strong class="retirement-warning">⚠ {}: {}</strong>', service, problem)
        return f"{service}: configured"

    @admin.display(description="Model retirement")
    def retirement(self, obj: VoiceConfig) -> str:
        notice = obj.retirement_notice() if obj.pk else ""
        if not notice:
            return "—"
        return format_html('<strong class="retirement-warning">⚠ {}</strong>', notice)

    @admin.display(description="Session payload sent to OpenAI")
    def session_payload_preview(self, obj: VoiceConfig) -> str:
        if getattr(obj, "form_has_errors", False):
            # The instance holds the rejected values: never show them as if they were the payload.
            saved = VoiceConfig.objects.filter(pk=obj.pk).first() if obj.pk else None
            if saved is None:
                return format_html('<p class="help">{}</p>', "No payload yet: the form has errors, and nothing "
                                   "was saved.")
            note = ("The form has errors, so nothing was saved: this is the payload of the saved config, "
                    "without the changes above.")
            return format_html('<p class="errornote payload-note">{}</p><pre>{}</pre>', note,
                               json.dumps(saved.to_session_payload(), indent=2))
        if not obj.pk:
            return "—"
        # No MCP credential in here: it is added from the server's environment only when a call starts.
        return format_html("<pre>{}</pre>", json.dumps(obj.to_session_payload(), indent=2))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], add: bool = False,
                           change: bool = False, form_url: str = "", obj: Any = None) -> HttpResponse:
        form = context["adminform"].form
        if form.is_bound and form.errors:
            form.instance.form_has_errors = True  # read by session_payload_preview
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request: HttpRequest, obj: VoiceConfig, form: Any, change: bool) -> None:
        obj.updated_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)


class LargeTableChangeList(ChangeList):
    """A change list that offers the next page past an estimated or capped count (voice/paging.py)."""

    @property
    def next_page_url(self) -> str:
        paginator = self.paginator
        if not (getattr(paginator, "is_estimate", False) or getattr(paginator, "is_capped", False)):
            return ""
        if self.page_num < paginator.num_pages or len(self.result_list) < self.list_per_page:
            return ""
        # A full page can be the last one: offer the next only if it holds a row (one indexed probe).
        start = self.page_num * self.list_per_page
        if not self.queryset[start:start + 1].exists():
            return ""
        return self.get_query_string({PAGE_VAR: self.page_num + 1})


class LargeTableAdmin(admin.ModelAdmin):
    paginator = LargeTablePaginator
    show_full_result_count = False
    # Facet counts are a COUNT per filter choice over the whole table on every view.
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LargeTableChangeList


class PagedInlineFormSet(BaseInlineFormSet):
    """A read-only inline that shows one page of its rows: a long session has hundreds of tool calls
    and usage rows, and a form for each made its admin page megabytes long."""

    per_page = 20
    query: QueryDict = QueryDict()

    @property
    def page_param(self) -> str:
        return f"{self.prefix}_page"

    def get_queryset(self) -> Any:
        if not hasattr(self, "_queryset"):
            self.paginator = Paginator(super().get_queryset(), self.per_page)
            self.page = self.paginator.get_page(self.query.get(self.page_param))
            self._queryset = self.page.object_list
        return self._queryset

    def pager(self) -> dict[str, Any]:
        """What the pager under the inline shows (admin/voice/paged_tabular.html)."""
        self.get_queryset()
        page, anchor = self.page, f"#{self.prefix}-group"
        return {
            "page": page,
            "previous": page_query(self.query, self.page_param, page.previous_page_number()) + anchor
            if page.has_previous() else "",
            "next": page_query(self.query, self.page_param, page.next_page_number()) + anchor
            if page.has_next() else "",
        }


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False
    formset = PagedInlineFormSet
    template = "admin/voice/paged_tabular.html"

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (formset,), {"query": request.GET})

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ToolCallInline(ReadOnlyInline):
    model = ToolCall
    fields = ("name", "call_id", "arguments", "output", "status", "started_at", "duration_ms")
    readonly_fields = fields


# The nav sidebar repeats the breadcrumbs and the index, and took 300 px from every list: with the filter
# column beside it, the session list's tokens and cost scrolled out of sight below about 1,900 px.
admin.site.enable_nav_sidebar = False


def _cost(cost: Any) -> str:
    """A cost for the admin: in dollars to a hundredth of a cent, the exact figure on hover; null means the
    model had no price, which must stand out, not read as $0."""
    if cost is None:
        return format_html('<span class="unpriced" title="{}">unpriced</span>',
                           "No ModelPrice for this model: add one to record its cost.")
    shown = "<$0.0001" if 0 < cost < Decimal("0.0001") else f"${cost:,.4f}"
    return format_html('<span class="cost" title="{} USD">{}</span>', f"{cost:f}", shown)


def _duration(seconds: float | None) -> str:
    """1 h 02 min, 3 min 07 s, 42 s."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _clock(seconds: float | None) -> str:
    """The list's narrow form: 1:02:05, 3:07, 0:42."""
    if seconds is None:
        return "—"
    hours, rest = divmod(max(0, round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _session_duration(session: VoiceSession, *, narrow: bool = False) -> str:
    seconds = session.duration_seconds
    text = _clock(seconds) if narrow else _duration(seconds)
    if session.is_live and seconds is not None:
        return format_html('<span title="still running">{}…</span>', text) if narrow else f"{text} so far"
    return text


def _payload(payload: Any, *, summary: str, open_: bool = False) -> str:
    """A JSON payload, indented, in a <details> that opens on a click (or already open)."""
    text = json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False)
    size = len(text.encode())
    label = f"{summary} · {size:,} bytes" if summary else f"{size:,} bytes"
    return format_html('<details class="payload"{}><summary>{}</summary><pre>{}</pre></details>',
                       " open" if open_ else "", label, text)


def _events_url(session_id: Any) -> str:
    # The event list searched by a session id shows that session's events in order (SessionEventAdmin).
    return reverse("admin:voice_sessionevent_changelist") + f"?{SEARCH_VAR}={session_id}"


class ResponseUsageInline(ReadOnlyInline):
    model = ResponseUsage
    fields = ("response_id", "status", "model", "input_text_tokens", "input_audio_tokens", "cached_tokens",
              "output_text_tokens", "output_audio_tokens", "total_tokens", "voice_seconds", "standby_seconds", "cost",
              "created_at")
    readonly_fields = fields

    @admin.display(description="Cost")
    def cost(self, obj: ResponseUsage) -> str:
        return _cost(obj.cost_usd)


class SessionEventInline(ReadOnlyInline):
    """The session's raw events, a page at a time, each payload folded until opened."""

    model = SessionEvent
    fields = ("seq", "direction", "created_at", "event")
    readonly_fields = fields
    ordering = ("seq",)
    verbose_name = "raw event"
    verbose_name_plural = "raw events"
    classes = ("collapse",)

    @admin.display(description="Event")
    def event(self, obj: SessionEvent) -> str:
        return _payload(obj.payload, summary=obj.type)


class SessionDateFilter(admin.DateFieldListFilter):
    pass


class ModelFilter(admin.SimpleListFilter):
    """Models to filter by, from what configs and prices name: never a SELECT DISTINCT over every session."""

    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        known = set(REALTIME_MODELS)
        known.update(VoiceConfig.objects.values_list("model", flat=True))
        known.update(ModelPrice.objects.values_list("model", flat=True))
        known.discard("")
        return [(name, name) for name in sorted(known)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(model=value) if value else queryset


# Sessions are exported this many at a time: five queries each time (sessions with their users and
# recordings, their transcript items, their tool calls, their timing events and their responses' usage,
# the last two for the replay timeline), and never more than one chunk's rows in memory.
EXPORT_CHUNK = 200
TEXT_SEPARATOR = "\n" + "=" * 60 + "\n"


def _export_sessions(queryset: QuerySet[VoiceSession]) -> Iterator[list[VoiceSession]]:
    """The selected sessions, in the list's order, a chunk at a time with their rows prefetched."""
    related = (Prefetch("transcript_items", queryset=TranscriptItem.objects.order_by("created_at", "id")),
               Prefetch("tool_calls", queryset=ToolCall.objects.order_by("started_at", "id")))
    # One streaming pass over the ids (a server-side cursor on PostgreSQL), so the selection's filters
    # and search run once, whatever its size.
    ids = queryset.values_list("pk", flat=True).iterator(chunk_size=EXPORT_CHUNK * 10)
    while chunk := list(itertools.islice(ids, EXPORT_CHUNK)):
        rows = {s.pk: s for s in VoiceSession.objects.filter(pk__in=chunk).select_related("user", "recording")
                .defer("session_payload").prefetch_related(*related, *timeline.export_related())}
        yield [rows[pk] for pk in chunk if pk in rows]


def _recording_url(request: HttpRequest | None, session: VoiceSession) -> str:
    path = reverse("voice:recording_audio", args=[session.pk])
    return request.build_absolute_uri(path) if request is not None else path


def _json_chunks(queryset: QuerySet[VoiceSession], request: HttpRequest | None = None) -> Iterator[str]:
    first = True
    yield "["
    for sessions in _export_sessions(queryset):
        parts = []
        for s in sessions:
            replay = timeline.build_prefetched(s)
            record = {
                **s.to_dict(),
                # Where each line sits on the recording (ms), as in the user's own JSON download.
                "transcript": [i.to_dict() | {"recording_ms": replay.item_ms.get(i.item_id, (None, None))[0]}
                               for i in s.ordered_transcript()],
                # The audio is a file of its own (one WebM, the user left, the model right): its address.
                "recording": {"url": _recording_url(request, s), "offset_ms": replay.offset_ms,
                              "duration_ms": replay.duration_ms} if replay.has_recording else None,
                "turn_timing": timeline.turn_rows(replay),
                "tool_calls": [t.to_dict() for t in s.tool_calls.all()],
            }
            # One session per line: json's C encoder (indent= falls back to the pure-Python one).
            parts.append(("\n" if first else ",\n") + json.dumps(record))
            first = False
        yield "".join(parts)
    yield "\n]\n"


def _text_chunks(queryset: QuerySet[VoiceSession], request: HttpRequest | None = None) -> Iterator[str]:
    first = True
    for sessions in _export_sessions(queryset):
        parts = []
        for s in sessions:
            replay = timeline.build_prefetched(s)
            parts.append(
                ("" if first else TEXT_SEPARATOR)
                + f"Session {s.pk}\nUser: {s.user.get_username()}\nConfig: {s.config_name}\n"
                f"Started: {s.started_at:%Y-%m-%d %H:%M:%S %Z}\n"
                f"Status: {s.status} {s.end_reason}\n{timeline.recording_line(replay, _recording_url(request, s))}\n\n"
                f"{s.transcript_text()}\n"
            )
            first = False
        yield "".join(parts)


async def _async_chunks(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Under ASGI, Django would buffer a synchronous iterator whole; read each chunk (its queries
    # included) in the thread the ORM uses, and hand it on as it comes.
    read = sync_to_async(_next_chunk, thread_sensitive=True)
    while (chunk := await read(chunks)) is not None:
        yield chunk


def _next_chunk(chunks: Iterator[str]) -> str | None:
    return next(chunks, None)


def _export(request: HttpRequest, queryset: QuerySet[VoiceSession], fmt: str) -> StreamingHttpResponse:
    """Stream the export: a constant number of queries per chunk of sessions, memory bounded by a chunk."""
    chunks = _json_chunks(queryset, request) if fmt == "json" else _text_chunks(queryset, request)
    content: Any = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    if fmt == "json":
        response = StreamingHttpResponse(content, content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="transcripts.json"'
    else:
        response = StreamingHttpResponse(content, content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="transcripts.txt"'
    return response


TRANSCRIPT_PER_PAGE = 100


@admin.register(VoiceSession)
class VoiceSessionAdmin(LargeTableAdmin):
    # Few, narrow columns: the tokens and cost must show beside the filters at ordinary widths.
    list_display = ("started", "user", "config_and_model", "state", "length", "tokens", "cost")
    # No date_hierarchy: its year/month/day links are a SELECT DISTINCT over every session on each view.
    # The started_at filter below gives the same narrowing at the cost of an index range.
    list_filter = ("status", "mode", "config", ModelFilter, ("started_at", SessionDateFilter))
    # What VoiceSession.objects.search() matches (get_search_results below); the search box shows
    # only when this is set.
    search_fields = ("=id", "=call_id", "user__username", "user__email", "transcript_items__text")
    search_help_text = "A session id, a call id, a user name or email, or words said in the transcript."
    list_select_related = ("user",)
    show_full_result_count = False
    paginator = LargeTablePaginator
    list_per_page = 50
    inlines = (ToolCallInline, ResponseUsageInline, SessionEventInline)
    actions = ("export_json", "export_text")
    readonly_fields = ("id", "user", "config", "config_name", "mode", "provider", "model", "status", "call_id",
                       "openai_session_id",
                       "started_at", "connected_at", "ended_at", "end_reason", "error", "turns", "input_tokens",
                       "output_tokens", "total_tokens", "cost", "transcript", "session_payload_pretty",
                       "duration", "raw_events", "recording_replay")
    fieldsets = (
        (None, {"fields": ("id", "user", "config", "config_name", "mode", "provider", "model", "status", "end_reason",
                           "error", "raw_events")}),
        ("Recording", {"fields": ("recording_replay",)}),
        ("Transcript", {"fields": ("transcript",)}),
        ("Timing and call", {"fields": ("started_at", "connected_at", "ended_at", "duration", "call_id",
                                        "openai_session_id")}),
        ("Usage", {"fields": ("turns", "input_tokens", "output_tokens", "total_tokens", "cost")}),
        ("Session payload", {"classes": ("collapse",), "fields": ("session_payload_pretty",)}),
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Subqueries, not joins: no row can repeat, so no DISTINCT (which sorted every column of every
        # session, JSON included, on each view) with or without a search term.
        if not search_term.strip():
            return queryset, False
        return cast(VoiceSessionQuerySet, queryset).search(search_term), False

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.admin_query = request.GET  # the transcript's page (transcript() has no request)
        return obj

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The payload (a few KB each) is read only by the change page, which fetches it on its own. The
        # recording (one row at most) is joined for the change page's replay.
        return (super().get_queryset(request).select_related("user", "config", "recording")
                .defer("session_payload"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    class Media:
        css = {"all": ("voice/admin.css",)}

    @admin.display(description="Started", ordering="started_at")
    def started(self, obj: VoiceSession) -> str:
        local = timezone.localtime(obj.started_at)
        # The year is hidden on phones (voice/admin.css), where every column counts.
        return format_html('<span class="year">{}-</span>{}', f"{local:%Y}", f"{local:%m-%d %H:%M}")

    @admin.display(description="Config · model", ordering="config_name")
    def config_and_model(self, obj: VoiceSession) -> str:
        return format_html('{}<br><span class="quiet">{} · {}</span>', obj.config_name, obj.model,
                           obj.get_mode_display())

    @admin.display(description="Status", ordering="status")
    def state(self, obj: VoiceSession) -> str:
        if not obj.end_reason:
            return obj.get_status_display()
        return format_html('{}<br><span class="quiet end-reason">{}</span>', obj.get_status_display(), obj.end_reason)

    @admin.display(description="Duration")
    def duration(self, obj: VoiceSession) -> str:
        return _session_duration(obj)

    @admin.display(description="Length")
    def length(self, obj: VoiceSession) -> str:
        return _session_duration(obj, narrow=True)

    @admin.display(description="Tokens", ordering="total_tokens")
    def tokens(self, obj: VoiceSession) -> str:
        return f"{obj.total_tokens:,}"

    @admin.display(description="Cost", ordering="cost_usd")
    def cost(self, obj: VoiceSession) -> str:
        return _cost(obj.cost_usd)

    @admin.display(description="Raw events")
    def raw_events(self, obj: VoiceSession) -> str:
        return format_html('<a href="{}">Every event of this session, in order</a> (also below, under '
                           '<a href="#events-group">Raw events</a>)', _events_url(obj.pk))

    @admin.display(description="Recording")
    def recording_replay(self, obj: VoiceSession) -> str:
        """The call's audio with its per-turn latency and cost (voice/timeline.py); lines play from the
        session's own page, which the admin links to."""
        # Only a recorded session pays for its timeline (a long one has thousands of timing rows).
        if not CallRecording.objects.filter(session=obj, chunk_count__gt=0).exists():
            return "Not recorded." if not obj.recording_consent else "Recording agreed, but no audio arrived."
        replay = timeline.build(obj)
        url = reverse("voice:recording_audio", args=[obj.pk])
        shown = list(replay.turns.values())[:ADMIN_REPLAY_TURNS]
        turns = format_html_join("", "<li>At {}: answered after {}, cost {}</li>", (
            (clock(t.audio_ms) or "—", seconds(t.latency_ms) or "—",
             "unpriced" if t.cost_usd is None else f"${t.cost_usd:.4f}")
            for t in shown))
        more = len(replay.turns) - len(shown)
        rest = format_html("<p>{} later turns are not listed here; the session's export holds every turn.</p>",
                           more) if more > 0 else ""
        return format_html('<audio controls preload="metadata" src="{}"></audio><p><a href="{}?download=1">'
                           'Download the recording</a> (WebM; the user left, the model right)</p><ul>{}</ul>{}',
                           url, url, turns, rest)

    @admin.display(description="Transcript")
    def transcript(self, obj: VoiceSession) -> str:
        query = cast(QueryDict, getattr(obj, "admin_query", QueryDict()))
        page = obj.transcript_page(query.get("transcript_page"), TRANSCRIPT_PER_PAGE)
        if not page.paginator.count:
            return "No transcript recorded."
        body = transcripts.admin_html(page.object_list)
        pager = ""
        if page.paginator.num_pages > 1:
            links = []
            if page.has_previous():
                links.append(format_html('<a href="{}#transcript">Earlier</a>',
                                         page_query(query, "transcript_page", page.previous_page_number())))
            if page.has_next():
                links.append(format_html('<a href="{}#transcript">Later</a>',
                                         page_query(query, "transcript_page", page.next_page_number())))
            pager = format_html(
                '<p class="paginator">Items {}–{} of {} · {}</p>', page.start_index(), page.end_index(),
                f"{page.paginator.count:,}", format_html_join(" · ", "{}", ((link,) for link in links)),
            )
        return format_html('<div class="voice-transcript" id="transcript">{}{}{}</div>', pager, body, pager)

    @admin.display(description="Session payload")
    def session_payload_pretty(self, obj: VoiceSession) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.session_payload, indent=2))

    @admin.action(description="Export selected transcripts as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[VoiceSession]) -> HttpResponseBase:
        return _export(request, queryset, "json")

    @admin.action(description="Export selected transcripts as plain text")
    def export_text(self, request: HttpRequest, queryset: QuerySet[VoiceSession]) -> HttpResponseBase:
        return _export(request, queryset, "text")


@admin.register(SessionEvent)
class SessionEventAdmin(LargeTableAdmin):
    list_display = ("session_link", "seq", "direction", "origin", "type", "created_at")
    list_filter = ("direction", "origin")
    fields = ("session_link", "seq", "direction", "origin", "type", "created_at", "event")
    readonly_fields = fields
    search_fields = ("=session__id", "type")
    search_help_text = "A session id shows that session's events in order; other text finds event types it starts."
    paginator = AppendOnlyPaginator
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("session",)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A session id is a direct filter on the indexed column (not UPPER(session_id::text), which
        # scanned every event); anything else is the start of an event type.
        term = search_term.strip()
        if not term:
            return queryset, False
        session_id = _as_uuid(term)
        if session_id is not None:
            return queryset.filter(session_id=session_id), False
        return queryset.filter(type__startswith=term.lower()), False

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # One session's events in order, from the (session, seq) constraint's index; otherwise the
        # newest first, from the primary key. Neither joins the session nor sorts the table.
        if _as_uuid(request.GET.get(SEARCH_VAR, "").strip()) is not None:
            return ("session_id", "seq")
        return ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    class Media:
        css = {"all": ("voice/admin.css",)}

    @admin.display(description="Session", ordering="session_id")
    def session_link(self, obj: SessionEvent) -> str:
        # From the id alone: no join, no query per row.
        url = reverse("admin:voice_voicesession_change", args=[obj.session_id])
        return format_html('<a href="{}" title="{}">{}…</a> · <a href="{}">its events</a>', url, obj.session_id,
                           str(obj.session_id)[:8], _events_url(obj.session_id))

    @admin.display(description="Payload")
    def event(self, obj: SessionEvent) -> str:
        return _payload(obj.payload, summary=obj.type, open_=True)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Searched by a session id: say whose events these are, and link back to the session.
        session_id = _as_uuid(request.GET.get(SEARCH_VAR, "").strip())
        if session_id is not None:
            extra_context = {**(extra_context or {}), "events_session": session_id,
                             "events_session_url": reverse("admin:voice_voicesession_change", args=[session_id])}
        return super().changelist_view(request, extra_context)


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


@admin.register(MinutePrice)
class MinutePriceAdmin(admin.ModelAdmin):
    """Per-minute prices of models billed by session time (GPT-Live; docs/gpt-live.md, "Cost")."""

    list_display = ("model", "active_per_minute", "standby_per_minute", "updated_at")
    search_fields = ("model",)


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
