"""Pages: home, the voice chat, the user's own sessions, and the staff dashboard."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.templatetags.static import static
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from voice import protocol, timeline, transcripts, wording
from voice.models import VoiceConfig, VoiceSession
from voice.paging import page_query

# Pages build links to a session from a URL with this id in it (the scripts put the real one in).
ANY_SESSION = "00000000-0000-0000-0000-000000000000"
# The dashboard's "Recently ended", read from the database when the page opens.
RECENT_SESSIONS = 20


def home(request: HttpRequest) -> HttpResponse:
    """Send people where they most likely want to go: staff to the dashboard, users to the chat."""
    if not request.user.is_authenticated:
        return redirect("login")
    if request.user.is_staff:
        return redirect("voice:dashboard")
    return redirect("voice:chat")


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


@require_GET
@cache_control(max_age=86400)
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on pages that name none (the admin's): send them to the real one."""
    return redirect(static("voice/favicon.svg"))


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    configs = VoiceConfig.objects.active()
    default = VoiceConfig.objects.for_slug_or_default(None)
    return render(
        request,
        "voice/chat.html",
        {
            "configs": configs,
            "default_slug": default.slug if default else "",
            "page_data": {
                "socket_path": f"/{protocol.VOICE_SOCKET_PATH}",
                # Staff may see a session's id and call id on the page; other users never do.
                "show_ids": request.user.is_staff,
                "totals_url": reverse("voice:session_totals", args=[ANY_SESSION]),
                "transcript_url": reverse("voice:session_detail", args=[ANY_SESSION]),
                "end_reasons": wording.END_REASONS,
                # Call recording (static/voice/chat-recording.js): where each chunk goes.
                "any_session": ANY_SESSION,
                "recording_chunk_url": reverse("voice:recording_chunk", args=[ANY_SESSION, 0]),
                "recording_chunk_ms": settings.VOICE_RECORDING_CHUNK_MS,
                "csrf_token": get_token(request),
            },
        },
    )


@login_required
@require_GET
def session_totals(request: HttpRequest, pk: str) -> JsonResponse:
    """What a call has cost so far, as recorded: the chat page asks after each of the model's answers."""
    session = (VoiceSession.objects.for_user(request.user).filter(pk=pk)
               .values("status", "turns", "total_tokens", "cost_usd").first())
    if session is None:
        raise Http404("No such session.")
    cost = session["cost_usd"]
    return JsonResponse({**session, "cost_usd": None if cost is None else f"{cost:.6f}"})


SESSIONS_PER_PAGE = 50
ITEMS_PER_PAGE = 100
TOOL_CALLS_PER_PAGE = 50


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    """The user's sessions, newest first, a page at a time, optionally narrowed by a search."""
    query = request.GET.get("q", "").strip()[:200]
    sessions = VoiceSession.objects.for_user(request.user).defer("session_payload").order_by("-started_at", "-pk")
    if query:
        sessions = sessions.search(query, user=request.user)
    page = Paginator(sessions, SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "voice/session_list.html", {
        "page": page,
        "sessions": page.object_list,
        "query": query,
        "previous_url": page_query(request.GET, "page", page.previous_page_number()) if page.has_previous() else "",
        "next_url": page_query(request.GET, "page", page.next_page_number()) if page.has_next() else "",
    })


@login_required
def session_detail(request: HttpRequest, pk: str) -> HttpResponse:
    """One session's transcript, a page at a time (a long session has thousands of items)."""
    # Someone else's session is a 404, not a 403: its existence is none of the asker's business.
    session = get_object_or_404(VoiceSession.objects.for_user(request.user).defer("session_payload"), pk=pk)
    items = session.transcript_page(request.GET.get("page"), ITEMS_PER_PAGE)
    tools = Paginator(session.tool_calls.order_by("started_at", "id"), TOOL_CALLS_PER_PAGE).get_page(
        request.GET.get("tools_page"))

    def link(name: str, page: Any, forward: bool) -> str:
        if forward and page.has_next():
            return page_query(request.GET, name, page.next_page_number())
        if not forward and page.has_previous():
            return page_query(request.GET, name, page.previous_page_number())
        return ""

    replay = timeline.build(session)
    for item in items.object_list:
        replay.place(item)
    for call in tools.object_list:
        call.at_ms = replay.tool_ms(session, call.started_at)  # type: ignore[attr-defined]  # for the template
    return render(request, "voice/session_detail.html", {
        "session": session,
        "has_recording": replay.has_recording,
        "recording_duration_ms": replay.duration_ms,
        "turns": timeline.turn_summary(replay),
        "items": items.object_list,
        "items_page": items,
        "items_previous": link("page", items, False),
        "items_next": link("page", items, True),
        "tool_calls": tools.object_list,
        "tools_page": tools,
        "tools_previous": link("tools_page", tools, False),
        "tools_next": link("tools_page", tools, True),
    })


def _transcript_rows(session: VoiceSession) -> list[dict[str, Any]]:
    rows = []
    for line in map(transcripts.line, session.ordered_transcript()):
        item = line.item
        rows.append({
            "time": item.created_at.isoformat(), "at": wording.moment(item.created_at, wording.TIME_OF_DAY),
            "speaker": line.speaker, "role": item.role, "kind": item.kind, "text": line.readable,
            "item_id": item.item_id, "interrupted": line.interrupted,
        })
    return rows


@login_required
@require_GET
def session_download(request: HttpRequest, pk: str, fmt: str) -> HttpResponse:
    """The user's own conversation as a text or JSON file (the record's ids are not in it)."""
    if fmt not in ("txt", "json"):
        raise Http404("Conversations download as .txt or .json.")
    session = get_object_or_404(VoiceSession.objects.for_user(request.user).select_related("user")
                                .defer("session_payload"), pk=pk)
    summary = session.to_dict()
    rows = _transcript_rows(session)
    replay = timeline.build(session)
    started = wording.moment(session.started_at)
    name = f"conversation-{slugify(started.replace(':', ''))}.{fmt}"
    cost = summary["cost_usd"]
    if fmt == "json":
        body = json.dumps({
            "started_at": summary["started_at"],
            "ended_at": summary["ended_at"],
            "duration_seconds": round(session.duration_seconds or 0, 1),
            "configuration": summary["config"], "model": summary["model"],
            "status": wording.status_label(session.status),
            "ended_because": wording.end_reason_text(session.end_reason, session.status),
            "turns": summary["turns"], "total_tokens": summary["total_tokens"], "cost_usd": cost,
            "transcript": [{k: v for k, v in row.items() if k not in ("at", "item_id")}
                           | {"recording_ms": replay.item_ms.get(row["item_id"], (None, None))[0]} for row in rows],
            # The audio itself is a file of its own: its address, and where the lines sit on it.
            "recording": {
                "url": request.build_absolute_uri(reverse("voice:recording_audio", args=[session.pk])),
                "offset_ms": replay.offset_ms, "duration_ms": replay.duration_ms,
            } if replay.has_recording else None,
            "turn_timing": [{k: v for k, v in turn.items() if k != "response_id"}
                            for turn in timeline.turn_rows(replay)],
            "tool_calls": [t.to_dict(for_download=True) for t in session.tool_calls.order_by("started_at", "id")],
        }, ensure_ascii=False, indent=2)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        head = [
            f"Conversation of {started}",
            f"{session.config_name} · {session.model}".strip(" ·"),
            f"Lasted {wording.duration(session.duration_seconds)} · {wording.status_label(session.status)}"
            + (f": {wording.end_reason_text(session.end_reason, session.status)}" if session.end_reason else ""),
            f"{session.total_tokens} tokens · " + ("cost unpriced" if cost is None else f"${session.cost_usd:.4f}"),
            timeline.recording_line(replay, request.build_absolute_uri(
                reverse("voice:recording_audio", args=[session.pk]))),
            "",
        ]
        lines = [f"[{row['at']}] {row['speaker']}: {row['text']}" + (" [interrupted]" if row["interrupted"] else "")
                 for row in rows]
        response = HttpResponse("\n".join(head + lines) + "\n", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # A logged-in user who is not staff gets the site's own 403 page (templates/403.html), not the
    # admin's login form, which would invite them to log in as someone else.
    # Rendered rather than raised: a refused page view is not worth a traceback in the log.
    if not request.user.is_staff:
        return render(request, "403.html", {"exception": "The live dashboard is for staff."}, status=403)
    ended = (VoiceSession.objects.exclude(status__in=[VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE])
             .select_related("user").defer("session_payload").order_by("-started_at")[:RECENT_SESSIONS])
    recent = sorted((s.to_dict() for s in ended), key=lambda s: s["ended_at"] or s["started_at"])
    may_review = request.user.has_perm("voice.view_voicesession")
    return render(request, "voice/dashboard.html", {"page_data": {
        # Oldest first: the page puts each one it adds at the top, as it does for sessions ending live.
        "recent": recent,
        "socket_path": f"/{protocol.DASHBOARD_SOCKET_PATH}",
        "login_url": resolve_url(settings.LOGIN_URL),
        "any_session": ANY_SESSION,
        "admin_url": reverse("admin:voice_voicesession_change", args=[ANY_SESSION]) if may_review else "",
        "end_reasons": wording.STAFF_END_REASONS,
    }})
