"""Which service a session's call goes to, resolved from the config and the server's environment.

A config names a provider (``openai`` or ``azure``) or leaves it to the server's ``VOICE_PROVIDER``. The
credentials always come from the environment (settings): ``OPENAI_API_KEY``; ``AZURE_OPENAI_API_KEY`` or
``AZURE_OPENAI_AD_TOKEN`` with ``AZURE_OPENAI_ENDPOINT`` (a config may name another endpoint). With no
credential at all the local emulator stands in for both: it serves OpenAI's ``/v1`` paths and Azure's
``/openai/v1`` ones, with Azure's authentication.

The session row keeps the provider and (for Azure) the API base it started with, so that whichever
process adopts or hangs up the call later reaches the same service; the credential is read afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from voice.realtime.calls import AuthProvider
from voice.realtime.errors import RealtimeConfigError
from voice.realtime.providers import AZURE_API_PATH, auth_for, azure_api_base, calls_params, service_name

__all__ = ["EMULATOR_AZURE_KEY", "EMULATOR_KEY", "Provider", "ProviderNotConfigured", "deployment_for", "for_config",
           "kind_of", "problems", "resolve", "service_name"]

if TYPE_CHECKING:
    from voice.models import VoiceConfig

# The emulator accepts any standard-looking credential; it never sees a real one. Azure keys are 32 (or
# more) letters and digits, and the emulator refuses other shapes as Azure would refuse a wrong key.
EMULATOR_KEY = "sk-emulator-local"
EMULATOR_AZURE_KEY = "0emulator0local0azure0key0000000"


class ProviderNotConfigured(Exception):
    """The provider a config needs has no endpoint or credential on this server. ``message`` is for the
    person starting a call; ``detail`` says which setting is missing, for the logs and the admin."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.message, self.detail = message, detail


@dataclass(frozen=True)
class Provider:
    """A resolved provider: where to send requests and with which credential (never stored)."""

    kind: str
    api_base: str
    api_key: str = ""
    ad_token: str = ""
    emulator: bool = False

    @property
    def service(self) -> str:
        return service_name(self.kind)

    def llm_entry(self) -> dict[str, Any]:
        """The provider's part of an llm_config ``config_list`` entry."""
        entry: dict[str, Any] = {"api_type": self.kind, "base_url": self.api_base, "api_key": self.api_key}
        if self.ad_token:
            entry["azure_ad_token"] = self.ad_token
        return entry

    def auth(self) -> AuthProvider:
        return auth_for(self.llm_entry())

    def calls_params(self, *, server_mode: bool) -> dict[str, str]:
        return calls_params(self.kind, server_mode=server_mode)


def kind_of(config: VoiceConfig | None) -> str:
    """The provider a config uses: its own choice, else the server's default."""
    chosen = getattr(config, "provider", "") if config is not None else ""
    return chosen or settings.VOICE_PROVIDER


def _emulator_azure_base() -> str:
    """The emulator's Azure paths, on the host and port it serves OpenAI's on."""
    parts = urlsplit(settings.OPENAI_BASE_URL)
    return urlunsplit((parts.scheme, parts.netloc, AZURE_API_PATH, "", ""))


def _not_configured(detail: str) -> ProviderNotConfigured:
    return ProviderNotConfigured(
        "This assistant uses a voice service this server is not set up for, so it cannot start. Ask an "
        "administrator to configure it or to switch the assistant to another service.",
        detail,
    )


def azure_base_for(config: VoiceConfig | None) -> str:
    """The Azure API base a new session of this config uses (raises ``ProviderNotConfigured``)."""
    endpoint = (getattr(config, "azure_endpoint", "") or settings.AZURE_OPENAI_ENDPOINT) if config is not None \
        else settings.AZURE_OPENAI_ENDPOINT
    if not endpoint:
        if settings.USING_EMULATOR:
            return _emulator_azure_base()
        raise _not_configured("Azure OpenAI has no endpoint: set AZURE_OPENAI_ENDPOINT or the config's endpoint.")
    try:
        return azure_api_base(endpoint)
    except RealtimeConfigError as exc:
        raise _not_configured(exc.message) from None


def resolve(kind: str, api_base: str = "") -> Provider:
    """The provider ``kind`` with its credential from the environment. ``api_base``: an Azure session's
    stored base (empty: the server's endpoint). Raises ``ProviderNotConfigured``."""
    if kind == "azure":
        base = api_base or azure_base_for(None)
        key, token = settings.AZURE_OPENAI_API_KEY, settings.AZURE_OPENAI_AD_TOKEN
        if not (key or token):
            if settings.USING_EMULATOR and base == _emulator_azure_base():
                return Provider("azure", base, api_key=EMULATOR_AZURE_KEY, emulator=True)
            raise _not_configured("Azure OpenAI has no credential: set AZURE_OPENAI_API_KEY or AZURE_OPENAI_AD_TOKEN.")
        return Provider("azure", base, api_key=key, ad_token="" if key else token)
    if kind == "openai":
        emulated = bool(settings.USING_EMULATOR and not settings.OPENAI_API_KEY)
        key = settings.OPENAI_API_KEY or (EMULATOR_KEY if emulated else "")
        if not key:
            raise _not_configured("OpenAI has no API key: set OPENAI_API_KEY.")
        return Provider("openai", settings.OPENAI_BASE_URL, api_key=key, emulator=emulated)
    raise _not_configured(f"Unknown provider {kind!r}.")


def for_config(config: VoiceConfig) -> Provider:
    """The provider a new session of ``config`` starts on (raises ``ProviderNotConfigured``)."""
    kind = kind_of(config)
    return resolve(kind, azure_base_for(config) if kind == "azure" else "")


def deployment_for(config: VoiceConfig) -> str:
    """Azure: the deployment the session's ``model`` names (the config's, the server's default, else the
    model's own name, which is how most deployments are named)."""
    return config.azure_deployment or settings.AZURE_OPENAI_DEPLOYMENT or config.model


def problems(config: VoiceConfig) -> str | None:
    """Why ``config`` cannot start on this server, for the admin and the start-up check; None if it can."""
    try:
        for_config(config)
    except ProviderNotConfigured as exc:
        return exc.detail
    return None
