from django.urls import path

from voice import views

app_name = "voice"
urlpatterns = [
    path("", views.chat, name="chat"),
    path("sessions/", views.session_list, name="session_list"),
    path("sessions/<uuid:pk>/", views.session_detail, name="session_detail"),
    path("dashboard/", views.dashboard, name="dashboard"),
]
