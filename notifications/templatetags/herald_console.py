"""Presentation helpers for the operator console templates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template

from notifications.domain import Status, parse_timestamp

register = template.Library()

CHART_ROW_HEIGHT = 30
CHART_LABEL_WIDTH = 110
CHART_BAR_WIDTH = 320


@register.filter
def as_datetime(value: str | None) -> datetime | str:
    """A stored timestamp (`2026-11-25T14:00:00.000000Z`) as a datetime, for the `date` filter."""
    if not value:
        return ""
    try:
        return parse_timestamp(value)
    except ValueError:
        return value


@register.filter
def producer_label(producer_id: str, names: dict[str, str]) -> str:
    name = names.get(producer_id)
    return f"{name} ({producer_id})" if name else producer_id


@register.inclusion_tag("admin/notifications/console/status_chart.html")
def status_chart(counts: list[tuple[Status, int]]) -> dict[str, Any]:
    """A horizontal bar chart of counts per status, as inline SVG (no script, no CDN)."""
    largest = max((count for _, count in counts), default=0) or 1
    rows = []
    for position, (status, count) in enumerate(counts):
        width = round(CHART_BAR_WIDTH * count / largest)
        rows.append(
            {
                "status": status.value,
                "count": count,
                "y": position * CHART_ROW_HEIGHT,
                "width": width,
                "count_x": CHART_LABEL_WIDTH + width + 6,
            }
        )
    return {
        "rows": rows,
        "height": len(rows) * CHART_ROW_HEIGHT,
        "view_width": CHART_LABEL_WIDTH + CHART_BAR_WIDTH + 70,
        "bar_x": CHART_LABEL_WIDTH,
    }


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
