"""Which service a call goes to (OpenAI or Azure OpenAI), and how each wants its URLs and credentials.

Both speak the same GA Realtime interface; what differs is small and lives here:

* **OpenAI**: base ``https://api.openai.com/v1``, ``Authorization: Bearer <api key>``, ``model`` is a
  model name.
* **Azure OpenAI**: base ``https://<resource>.openai.azure.com/openai/v1``, ``api-key: <key>`` (or
  ``Authorization: Bearer <Entra ID token>``), ``model`` is the *deployment name*. In server mode the
  calls URL carries ``?webrtcfilter=on``: Azure then sends the browser's data channel only the few
  events a page needs to show the call (the server hears everything on its sideband), which keeps the
  untrusted browser from seeing tool calls, their arguments and the session's instructions.

The paths under the base are the same (``/realtime/client_secrets``, ``/realtime/calls``,
``/realtime?call_id=``, ``/realtime/calls/{id}/hangup``), so ``calls.py``, ``sideband.py`` and
``webrtc.py`` build them as before from the base; this module gives them the base, the credential hook
and the calls URL's query. No Django here (DESIGN.md rule 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from voice.realtime.calls import AuthProvider, bearer_auth
from voice.realtime.errors import RealtimeConfigError

ProviderKind = Literal["openai", "azure"]
PROVIDERS: tuple[ProviderKind, ...] = ("openai", "azure")
AZURE_API_PATH = "/openai/v1"
# What the service is called in sentences people read.
SERVICE_NAMES: dict[str, str] = {"openai": "OpenAI", "azure": "Azure OpenAI"}
# Azure filters the browser's data channel when the server holds the call (module docstring).
AZURE_SERVER_CALL_PARAMS: dict[str, str] = {"webrtcfilter": "on"}

# An Entra ID token, or something that returns a fresh one each time it is called (tokens last about an
# hour; a caller that refreshes them passes the callable).
TokenSource = str | Callable[[], str]


def service_name(kind: str | None) -> str:
    return SERVICE_NAMES.get(kind or "openai", "OpenAI")


def azure_api_base(endpoint: str) -> str:
    """The Azure OpenAI API base (``https://res.openai.azure.com/openai/v1``) from a resource endpoint.

    Accepts the endpoint as the Azure portal shows it (``https://res.openai.azure.com/``, or a
    ``cognitiveservices.azure.com`` one), or already ending in ``/openai/v1``. A query string, a
    fragment or another path is refused: it would be silently dropped from every request otherwise.
    """
    raw = (endpoint or "").strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise RealtimeConfigError(
            f"The Azure OpenAI endpoint must be an https URL such as https://my-resource.openai.azure.com, got {raw!r}."
        )
    if parts.query or parts.fragment:
        raise RealtimeConfigError(f"The Azure OpenAI endpoint must not carry a query or fragment, got {raw!r}.")
    path = parts.path.rstrip("/")
    if path in ("", "/openai"):
        path = AZURE_API_PATH
    if path != AZURE_API_PATH:
        raise RealtimeConfigError(
            f"The Azure OpenAI endpoint should be the resource's address (https://my-resource.openai.azure.com), "
            f"got {raw!r}."
        )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def azure_auth(api_key: str | None = None, ad_token: TokenSource | None = None) -> AuthProvider:
    """Azure's credential: ``api-key`` when a key is given, else ``Authorization: Bearer <Entra token>``.

    A key wins when both are set (one credential per request: Azure refuses neither, but a request that
    fails should say which one it used). ``ad_token`` may be a callable returning a fresh token.
    """
    if api_key:
        headers = {"api-key": api_key}
        return lambda: headers
    if ad_token is None or ad_token == "":
        raise RealtimeConfigError("Azure OpenAI needs an API key or an Entra ID token; neither was given.")
    if callable(ad_token):
        source = ad_token
        return lambda: {"Authorization": f"Bearer {source()}"}
    bearer = {"Authorization": f"Bearer {ad_token}"}
    return lambda: bearer


def auth_for(config: Mapping[str, Any]) -> AuthProvider:
    """The credential hook for an llm_config's ``config_list[0]`` (``api_type``, ``api_key``,
    ``azure_ad_token``)."""
    if config.get("api_type") == "azure":
        return azure_auth(config.get("api_key") or None, config.get("azure_ad_token") or None)
    return bearer_auth(config.get("api_key") or None)


def calls_params(kind: str | None, *, server_mode: bool) -> dict[str, str]:
    """The query of ``POST /realtime/calls`` (Azure's filter when the server holds the call)."""
    return dict(AZURE_SERVER_CALL_PARAMS) if kind == "azure" and server_mode else {}


def credential_secrets(config: Mapping[str, Any]) -> list[str]:
    """The raw credentials of a config entry, for redaction."""
    token = config.get("azure_ad_token")
    return [s for s in (config.get("api_key"), token if isinstance(token, str) else None) if s]


__all__ = [
    "AZURE_API_PATH",
    "AZURE_SERVER_CALL_PARAMS",
    "PROVIDERS",
    "ProviderKind",
    "auth_for",
    "azure_api_base",
    "azure_auth",
    "calls_params",
    "credential_secrets",
    "service_name",
]
