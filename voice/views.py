"""Pages: home, the voice chat, the user's own sessions, and the staff dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from voice.models import VoiceConfig, VoiceSession
from voice.paging import page_query


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


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    configs = VoiceConfig.objects.active()
    default = VoiceConfig.objects.for_slug_or_default(None)
    return render(
        request,
        "voice/chat.html",
        {"configs": configs, "default_slug": default.slug if default else ""},
    )


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

    return render(request, "voice/session_detail.html", {
        "session": session,
        "items": items.object_list,
        "items_page": items,
        "items_previous": link("page", items, False),
        "items_next": link("page", items, True),
        "tool_calls": tools.object_list,
        "tools_page": tools,
        "tools_previous": link("tools_page", tools, False),
        "tools_next": link("tools_page", tools, True),
    })


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # A logged-in user who is not staff gets the site's own 403 page (templates/403.html), not the
    # admin's login form, which would invite them to log in as someone else.
    # Rendered rather than raised: a refused page view is not worth a traceback in the log.
    if not request.user.is_staff:
        return render(request, "403.html", {"exception": "The live dashboard is for staff."}, status=403)
    return render(request, "voice/dashboard.html")
