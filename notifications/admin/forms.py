"""Input of the operator console: list filters, the requeue confirmation, and the reasons (and a
pause's end) of the host and deliver-now actions."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from notifications.domain import Status

MAX_SELECTION = 100
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class MessageFilterForm(forms.Form):
    status = forms.ChoiceField(required=False)
    producer = forms.ChoiceField(required=False)
    q = forms.CharField(required=False, max_length=255, strip=True)
    cursor = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, producers: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "All")] + [(s.value, s.value) for s in Status]
        self.fields["producer"].choices = [("", "All")] + sorted(
            producers.items(), key=lambda item: item[1].lower()
        )


class MessageIdsField(forms.Field):
    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        return [str(item).strip() for item in value if str(item).strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_SELECTION:
            raise ValidationError(f"Select at most {MAX_SELECTION} messages at a time.")
        for message_id in value:
            if not _MESSAGE_ID.match(message_id):
                raise ValidationError(f"{message_id[:40]!r} is not a message id.")


class RequeueReasonForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=500,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Recorded in each message's history and in the admin log.",
    )


class BulkRequeueForm(RequeueReasonForm):
    ids = MessageIdsField(error_messages={"required": "Select at least one message."})
    filters = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)


class HostLookupForm(forms.Form):
    host = forms.CharField(max_length=300, strip=True)


class PauseHostForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Shown on the dashboard and recorded with the pause.",
    )
    until = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Empty: until resumed.",
    )


class ResumeHostForm(forms.Form):
    reason = forms.CharField(
        required=False, max_length=500, strip=True, widget=forms.TextInput(attrs={"size": 60})
    )


class DeliverNowForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Recorded in each message's history.",
    )
