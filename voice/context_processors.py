from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    """What every page's chrome needs: whether we are talking to the emulator rather than a model."""
    return {"USING_EMULATOR": settings.USING_EMULATOR}
