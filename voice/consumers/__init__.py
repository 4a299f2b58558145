"""Websocket consumers, one module each: the voice session (voice_session.py) and the live dashboard
(dashboard.py); what they share is in _common.py. voice/routing.py imports them from here."""

from voice.consumers.dashboard import DashboardConsumer, _session_snapshot
from voice.consumers.voice_session import VoiceSessionConsumer

__all__ = ["DashboardConsumer", "VoiceSessionConsumer", "_session_snapshot"]
