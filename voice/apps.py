from django.apps import AppConfig


class VoiceConfigApp(AppConfig):
    name = "voice"
    verbose_name = "Voice chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks; deletes a recording's files with its rows; fills the tool registry.
        from voice import call_audio, checks  # noqa: F401
        from voice.tools import builtin  # noqa: F401
