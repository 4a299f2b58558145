from django.urls import path

from voice.consumers import DashboardConsumer, VoiceSessionConsumer

websocket_urlpatterns = [
    path("ws/voice/", VoiceSessionConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
]
