"""The call recorder's HTTP side: chunk uploads from the chat page, and the recording played back.

Uploads: POST /voice/sessions/<id>/recording/<index> with the chunk as the body (audio/webm), the
session cookie and the CSRF header; only the call's own user, only with the consent given before the
call, in order, once per index (voice/call_audio.py). Answers are JSON with a sentence for people.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from voice import call_audio, wording
from voice.models import CallRecording, VoiceSession

logger = logging.getLogger(__name__)


def _refused(refusal: call_audio.Refusal) -> JsonResponse:
    response = JsonResponse(refusal.body(), status=refusal.status)
    if refusal.status == 429:
        response["Retry-After"] = "5"
    return response


def _own_session(request: HttpRequest, pk: str) -> VoiceSession:
    """The signed-in user's own session; another user's is a 404 like a missing one."""
    if not request.user.is_authenticated:
        raise call_audio.Refusal(401, "not_logged_in", "You are not signed in any more; sign in and call again.")
    session = (VoiceSession.objects.for_user(request.user).select_related("config")
               .defer("session_payload").filter(pk=pk).first())
    if session is None:
        raise call_audio.Refusal(404, "no_such_session", "This call is not one of yours, so nothing was stored.")
    return session


@require_POST
def upload_chunk(request: HttpRequest, pk: str, index: int) -> JsonResponse:
    try:
        session = _own_session(request, pk)
        declared = request.META.get("CONTENT_LENGTH") or "0"
        limit = call_audio.settings.VOICE_RECORDING_MAX_CHUNK_BYTES
        if declared.isdigit() and int(declared) > limit:
            raise call_audio.Refusal(413, "chunk_too_large", "The recording chunk was too large.")
        body = request.read(limit + 1)
        call_audio.check_chunk(session, index, request.content_type or "", body)
        stored = call_audio.store_chunk(session, index, body,
                                        offset_ms=request.headers.get("X-Recording-Offset-Ms"),
                                        duration_ms=request.headers.get("X-Recording-Duration-Ms"))
    except call_audio.Refusal as refusal:
        # Logged once, by Django's request log (a 4xx warning with the path).
        return _refused(refusal)
    except IntegrityError:
        # Two uploads of the same part at once: the other one stored it.
        return _refused(call_audio.Refusal(409, "chunk_conflict", "This part of the recording was being stored "
                                           "twice at once; it was stored once."))
    return JsonResponse({"index": stored.index, "stored": stored.stored, "next": stored.next_index,
                         "size_bytes": stored.size_bytes}, status=201 if stored.stored else 200)


@require_GET
def upload_status(request: HttpRequest, pk: str) -> JsonResponse:
    """Where the recording stands: the page asks after a reconnect to resume from the next part."""
    try:
        session = _own_session(request, pk)
    except call_audio.Refusal as refusal:
        return _refused(refusal)
    recording = CallRecording.objects.filter(session=session).first()
    return JsonResponse({
        "consent": session.recording_consent,
        "open": call_audio.upload_window_open(session),
        "next": recording.chunk_count if recording else 0,
        "size_bytes": recording.size_bytes if recording else 0,
    })


def may_hear(user: Any, session: VoiceSession) -> bool:
    """The call's own user, and reviewers who may see sessions in the admin."""
    return user.is_authenticated and (session.user_id == user.pk or user.has_perm("voice.view_voicesession"))


@require_GET
def audio(request: HttpRequest, pk: str) -> HttpResponseBase:
    """The whole recording (one WebM or WAV file), with byte ranges so that the player can seek."""
    if not request.user.is_authenticated:
        raise Http404("No such recording.")
    recording = get_object_or_404(CallRecording.objects.select_related("session"), session_id=pk)
    if not may_hear(request.user, recording.session):
        raise Http404("No such recording.")
    rows = call_audio.chunk_rows(recording)
    total = sum(size for _, size in rows)
    try:
        wanted = call_audio.parse_range(request.headers.get("Range", ""), total)
    except ValueError:
        unsatisfiable = HttpResponse(status=416)
        unsatisfiable["Content-Range"] = f"bytes */{total}"
        return unsatisfiable
    start, end = wanted or (0, total - 1)
    response = StreamingHttpResponse(call_audio.read_range(rows, start, end), content_type=recording.content_type,
                                     status=206 if wanted else 200)
    response["Content-Length"] = str(end - start + 1 if total else 0)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, no-store"
    if wanted:
        response["Content-Range"] = f"bytes {start}-{end}/{total}"
    if request.GET.get("download"):
        started = wording.moment(recording.session.started_at)
        extension = "wav" if recording.content_type == "audio/wav" else "webm"
        response["Content-Disposition"] = f'attachment; filename="call-{slugify(started.replace(":", ""))}.{extension}"'
    return response
