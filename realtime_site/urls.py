from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from voice import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("voice/", include("voice.urls")),
    path("admin/", admin.site.urls),
]
