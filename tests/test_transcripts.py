"""voice/transcripts.py: one reading of a transcript item, laid out for the admin, its export and the pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from voice import transcripts
from voice.models import TranscriptItem, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def items(owner: User) -> list[TranscriptItem]:
    session = VoiceSession.objects.create(user=owner, config=VoiceConfig.objects.get(slug="default"))
    make = TranscriptItem.objects.create
    return [
        make(session=session, item_id="a", role="user", text="What <time> is it?"),
        make(session=session, item_id="b", kind=TranscriptItem.Kind.FUNCTION_CALL, name="current_time",
             text='{"timezone": "UTC"}'),
        make(session=session, item_id="c", kind=TranscriptItem.Kind.FUNCTION_CALL_OUTPUT, text='{"time": "12:00"}'),
        make(session=session, item_id="d", role="assistant", text="It is noon.",
             status=TranscriptItem.Status.TRUNCATED, text_truncated=True),
    ]


def test_a_line_has_the_records_words_and_a_readers(items: list[TranscriptItem]) -> None:
    lines = [transcripts.line(item) for item in items]
    assert [ln.label for ln in lines] == ["user", "tool call", "tool output", "assistant"]
    assert [ln.speaker for ln in lines] == ["You", "Tool call", "Tool output", "Assistant"]
    assert lines[1].text == 'current_time({"timezone": "UTC"})'
    assert lines[1].readable == "current_time(timezone: UTC)"
    assert lines[2].readable == "time: 12:00"
    assert [ln.role for ln in lines] == ["user", "tool", "tool", "assistant"]
    assert (lines[3].interrupted, lines[3].text_cut) == (True, True)
    assert not (lines[0].interrupted or lines[0].text_cut)


def test_the_plain_text_and_the_admin_html_lay_out_the_same_lines(items: list[TranscriptItem]) -> None:
    assert transcripts.plain_text(items).splitlines() == [
        "user: What <time> is it?",
        'tool call current_time({"timezone": "UTC"})',
        'tool output: {"time": "12:00"}',
        "assistant: It is noon. [interrupted] [text cut: too long to record]",
    ]
    html = transcripts.admin_html(items)
    assert '<p class="turn turn-user"><strong>user:</strong> What &lt;time&gt; is it?<em></em></p>' in html
    assert "<strong>tool call:</strong> current_time({&quot;timezone&quot;: &quot;UTC&quot;})" in html
    assert "It is noon.<em> (interrupted) (text cut: too long to record)</em>" in html
