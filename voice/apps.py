from django.apps import AppConfig


class VoiceConfigApp(AppConfig):
    name = "voice"
    verbose_name = "Voice chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from voice import checks  # noqa: F401  (registers the system checks)
