from django.urls import path

from voice import recording_views, views

app_name = "voice"
urlpatterns = [
    path("", views.chat, name="chat"),
    path("sessions/", views.session_list, name="session_list"),
    path("sessions/<uuid:pk>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:pk>/totals", views.session_totals, name="session_totals"),
    path("sessions/<uuid:pk>/conversation.<str:fmt>", views.session_download, name="session_download"),
    path("sessions/<uuid:pk>/recording/<int:index>", recording_views.upload_chunk, name="recording_chunk"),
    path("sessions/<uuid:pk>/recording", recording_views.upload_status, name="recording_status"),
    path("sessions/<uuid:pk>/recording.webm", recording_views.audio, name="recording_audio"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
