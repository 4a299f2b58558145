"""Pages: home, the voice chat, the user's own sessions, and the staff dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from voice.models import VoiceConfig, VoiceSession


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


@login_required
def session_list(request: HttpRequest) -> HttpResponse:
    sessions = VoiceSession.objects.for_user(request.user).order_by("-started_at")[:200]
    return render(request, "voice/session_list.html", {"sessions": sessions})


@login_required
def session_detail(request: HttpRequest, pk: str) -> HttpResponse:
    # Someone else's session is a 404, not a 403: its existence is none of the asker's business.
    session = get_object_or_404(VoiceSession.objects.for_user(request.user), pk=pk)
    return render(
        request,
        "voice/session_detail.html",
        {
            "session": session,
            "items": session.ordered_transcript(),
            "tool_calls": session.tool_calls.all(),
            "usages": session.usages.all(),
        },
    )


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # A logged-in user who is not staff gets the site's own 403 page (templates/403.html), not the
    # admin's login form, which would invite them to log in as someone else.
    # Rendered rather than raised: a refused page view is not worth a traceback in the log.
    if not request.user.is_staff:
        return render(request, "403.html", {"exception": "The live dashboard is for staff."}, status=403)
    return render(request, "voice/dashboard.html")
