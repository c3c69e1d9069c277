"""Presentation helpers for the operator console templates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template

from notifications.domain import HourlyAttempts, Status, parse_timestamp

register = template.Library()

CHART_ROW_HEIGHT = 30
CHART_LABEL_WIDTH = 110
CHART_BAR_WIDTH = 320
HOURLY_HEIGHT = 160
HOURLY_SLOT = 28  # per hour: a delivered and a failed bar side by side
HOURLY_LEFT = 44  # the scale's labels


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


@register.inclusion_tag("admin/notifications/console/hourly_chart.html")
def hourly_chart(hours: list[HourlyAttempts]) -> dict[str, Any]:
    """Attempts per UTC hour, delivered and failed side by side, as inline SVG (oldest left)."""
    largest = max((max(h.delivered, h.failed) for h in hours), default=0) or 1
    bar = (HOURLY_SLOT - 6) // 2
    columns = []
    for position, hour in enumerate(hours):
        x = HOURLY_LEFT + position * HOURLY_SLOT
        delivered = round(HOURLY_HEIGHT * hour.delivered / largest)
        failed = round(HOURLY_HEIGHT * hour.failed / largest)
        columns.append(
            {
                "hour": hour.hour,
                "label": hour.hour[11:13] if position % 3 == 0 else "",
                "delivered": hour.delivered,
                "failed": hour.failed,
                "x": x,
                "failed_x": x + bar,
                "label_x": x + bar,
                "delivered_y": 10 + HOURLY_HEIGHT - delivered,
                "delivered_height": delivered,
                "failed_y": 10 + HOURLY_HEIGHT - failed,
                "failed_height": failed,
            }
        )
    return {
        "columns": columns,
        "bar": bar,
        "largest": largest,
        "top": 10,
        "base": 10 + HOURLY_HEIGHT,
        "label_y": 10 + HOURLY_HEIGHT + 16,
        "left": HOURLY_LEFT,
        "width": HOURLY_LEFT + len(hours) * HOURLY_SLOT + 6,
        "height": HOURLY_HEIGHT + 34,
    }
