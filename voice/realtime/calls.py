"""Server-side control of a call that the browser started: hang it up with the standard key."""

from __future__ import annotations

import logging

import httpx

logger = logging.getLogger(__name__)


async def hangup(api_base: str, api_key: str, call_id: str, *, timeout: float = 5.0) -> bool:
    """POST {base}/realtime/calls/{call_id}/hangup. True if the call is gone (2xx or already unknown)."""
    url = f"{api_base.rstrip('/')}/realtime/calls/{call_id}/hangup"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            response = await http.post(url, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("Hang-up of call %s failed: %s", call_id, exc.__class__.__name__)
        return False
    if response.is_success or response.status_code == 404:
        return True
    logger.warning("Hang-up of call %s answered %d", call_id, response.status_code)
    return False
