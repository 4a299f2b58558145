from django.urls import path

from voice.consumers import DashboardConsumer, VoiceSessionConsumer
from voice.protocol import DASHBOARD_SOCKET_PATH, VOICE_SOCKET_PATH

websocket_urlpatterns = [
    path(VOICE_SOCKET_PATH, VoiceSessionConsumer.as_asgi()),
    path(DASHBOARD_SOCKET_PATH, DashboardConsumer.as_asgi()),
]
