"""Reads for the API and the operator console."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

from notifications.clock import Clock, system_clock
from notifications.delivery.http import outgoing_headers
from notifications.domain import (
    Attempt,
    FailureNote,
    HourlyAttempts,
    Message,
    MessageNotFound,
    Status,
    format_timestamp,
)
from notifications.hosts import Circuit, HostEvent, HostLimits, HostState, normalize_host
from notifications.models import (
    HostPolicy,
    Producer,
    SigningSecret,
    producer_pk,
    producer_public_id,
)
from notifications.queue import WorkQueue, default_queue
from notifications.services import message_id_for
from notifications.store import MessageStore, default_store
from notifications.validation import mask_headers, mask_url


class InvalidCursor(ValueError):
    pass


def _encode_position(direction: str, position: str) -> str:
    """An opaque cursor: a listing position and which way to read from it."""
    raw = json.dumps({direction: position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_position(cursor: str, directions: tuple[str, ...], complaint: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        ((direction, position),) = data.items()
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise InvalidCursor(complaint) from None
    if direction not in directions or not isinstance(position, str) or not position:
        raise InvalidCursor(complaint)
    return direction, position


def encode_cursor(before: str) -> str:
    return _encode_position("before", before)


def decode_cursor(cursor: str) -> str:
    return _decode_position(cursor, ("before",), "The cursor is not one this API returned.")[1]


def message_get(
    *, message_id: str, producer_id: str | None = None, store: MessageStore | None = None
) -> tuple[Message, list[Attempt]]:
    """A message and its attempts; MessageNotFound if absent or owned by another producer."""
    store = store or default_store()
    message, attempts = store.get_full(message_id)
    if message is None or (producer_id is not None and message.producer_id != producer_id):
        raise MessageNotFound(message_id)
    return message, attempts


def message_list(
    *,
    producer_id: str | None = None,
    status: Status | None = None,
    cursor: str | None = None,
    limit: int = 50,
    store: MessageStore | None = None,
) -> tuple[list[Message], str | None]:
    """Newest first; returns the page and the cursor of the next (older) page, if any."""
    store = store or default_store()
    before = decode_cursor(cursor) if cursor else None
    messages, next_before = store.list_messages(
        status=status, producer_id=producer_id, limit=limit, before=before
    )
    return messages, encode_cursor(next_before) if next_before else None


@dataclass(frozen=True)
class ProducerProfile:
    """What a delivery needs to know of its producer: whether it is active (a deactivated
    producer's messages wait), and its signing secrets."""

    active: bool
    signing_secrets: list[str]


def producer_profile(*, producer_id: str) -> ProducerProfile:
    """The profile of a producer by the id stored on its messages. A producer that no longer
    exists counts as active, without secrets (its messages go, unsigned, as before)."""
    pk = producer_pk(producer_id)
    if pk is None:
        return ProducerProfile(True, [])
    active = Producer.objects.filter(pk=pk).values_list("is_active", flat=True).first()
    secrets = SigningSecret.objects.filter(producer_id=pk).values_list("secret", flat=True)
    return ProducerProfile(active is not False, list(secrets))


class ProducerCache:
    """Per-process cache of producer profiles, so a delivery does not query the database each
    time. A deactivation or a secret rotation reaches workers within `ttl_seconds`."""

    def __init__(self, *, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: dict[str, tuple[float, ProducerProfile]] = {}
        self._lock = threading.Lock()

    def get(self, producer_id: str) -> ProducerProfile:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(producer_id)
        if cached and now - cached[0] < self.ttl_seconds:
            return cached[1]
        # Delivery threads live outside Django's request cycle, so they follow its rule for such
        # threads: drop an unusable or expired connection before and after each use (a
        # connection held across a database restart would otherwise fail every read).
        close_old_connections()
        try:
            profile = producer_profile(producer_id=producer_id)
        finally:
            close_old_connections()
        with self._lock:
            self._entries[producer_id] = (now, profile)
        return profile


def default_host_limits() -> HostLimits:
    """What a host without a policy may take (the HOST_* and CIRCUIT_* settings)."""
    return HostLimits(
        max_in_flight=settings.HOST_MAX_IN_FLIGHT,
        max_per_second=settings.HOST_MAX_PER_SECOND,
        failure_threshold=settings.CIRCUIT_FAILURE_THRESHOLD,
        cool_off_seconds=settings.CIRCUIT_COOL_OFF_SECONDS,
        max_cool_off_seconds=settings.CIRCUIT_MAX_COOL_OFF_SECONDS,
    )


def limits_of(policy: HostPolicy, defaults: HostLimits) -> HostLimits:
    """A policy's limits, its empty fields taken from `defaults`."""

    def pick(value: int | None, default: float) -> float:
        return default if value is None else value

    return HostLimits(
        max_in_flight=int(pick(policy.max_in_flight, defaults.max_in_flight)),
        max_per_second=int(pick(policy.max_per_second, defaults.max_per_second)),
        failure_threshold=int(pick(policy.failure_threshold, defaults.failure_threshold)),
        cool_off_seconds=pick(policy.cool_off_seconds, defaults.cool_off_seconds),
        max_cool_off_seconds=max(
            defaults.max_cool_off_seconds,
            pick(policy.cool_off_seconds, defaults.cool_off_seconds),
        ),
    )


def host_policies() -> dict[str, HostLimits]:
    """Every host policy's limits, by host (one query; the worker's host guard calls it from a
    thread of its own, outside any request, so it drops stale connections as ProducerCache does)."""
    defaults = default_host_limits()
    close_old_connections()
    try:
        return {policy.host: limits_of(policy, defaults) for policy in HostPolicy.objects.all()}
    finally:
        close_old_connections()


@dataclass(frozen=True)
class HostView:
    """A target host for an operator: its state, its limits (its policy's, or the defaults),
    and its latest transitions."""

    state: HostState
    limits: HostLimits
    has_policy: bool
    events: list[HostEvent]
    paused: bool  # now (a pause with an end time ends by itself)


def host_view(
    *, host: str, store: MessageStore | None = None, clock: Clock = system_clock
) -> HostView:
    """Raises InvalidHost for a name no target URL could have."""
    host = normalize_host(host)
    store = store or default_store()
    policy = HostPolicy.objects.filter(host=host).first()
    defaults = default_host_limits()
    state = store.hosts.read(host)
    return HostView(
        state=state,
        limits=limits_of(policy, defaults) if policy else defaults,
        has_policy=policy is not None,
        events=store.hosts.events(host),
        paused=state.paused_at(clock.now()),
    )


def is_scheduled(message: Message, *, clock: Clock = system_clock) -> bool:
    """Whether "deliver now" could pull the message forward: QUEUED with its next attempt ahead."""
    return (
        message.status == Status.QUEUED
        and message.next_attempt_at is not None
        and message.next_attempt_at > format_timestamp(clock.now())
    )


@dataclass(frozen=True)
class HeldBack:
    """A host held back, and why: `kind` "open" or "half_open" (its circuit), or "paused";
    `until` is when the next probe may go, or when the pause ends (None: until resumed)."""

    host: str
    kind: str
    since: str | None
    reason: str
    actor: str
    until: str | None


def hosts_held_back(
    *, store: MessageStore | None = None, clock: Clock = system_clock
) -> list[HeldBack]:
    """Hosts whose circuit is open or half-open, and hosts paused, now (two reads: the GUARDED
    set and the states it names)."""
    now = clock.now()
    rows = []
    for state in (store or default_store()).hosts.guarded():
        if state.circuit != Circuit.CLOSED:
            until = state.open_until if state.circuit == Circuit.OPEN else state.probe_until
            rows.append(
                HeldBack(
                    state.host,
                    state.circuit.value,
                    state.circuit_since,
                    state.circuit_reason,
                    state.circuit_by,
                    until,
                )
            )
        if state.paused_at(now):
            rows.append(
                HeldBack(
                    state.host,
                    "paused",
                    state.paused_since,
                    state.paused_reason,
                    state.paused_by,
                    state.paused_until,
                )
            )
    return rows


# -- operator console ------------------------------------------------------------------------------


def producer_names() -> dict[str, str]:
    """Producer names by the id stored on messages (`prd_<pk>`)."""
    return {producer_public_id(pk): name for pk, name in Producer.objects.values_list("pk", "name")}


@dataclass(frozen=True)
class RecentFailure:
    note: FailureNote
    status_now: Status | None  # None when the message no longer exists


@dataclass(frozen=True)
class DashboardSummary:
    counts: list[tuple[Status, int]]  # in lifecycle order
    total: int
    queue_depth: dict[str, int]
    recent_failures: list[RecentFailure]
    top_failing_hosts: list[tuple[str, int]]
    window_hours: int
    attempts_by_hour: list[HourlyAttempts] = field(default_factory=list)  # oldest first


def dashboard_summary(
    *,
    window_hours: int = 24,
    recent: int = 10,
    hosts: int = 10,
    store: MessageStore | None = None,
    queue: WorkQueue | None = None,
    clock: Clock = system_clock,
) -> DashboardSummary:
    """Everything the dashboard shows, from the store's maintained statistics (a few batch reads
    whatever the size of the table; see `store` "statistics"), the current status of the recent
    failures (one batch read) and the queue depths (two SQS calls)."""
    store = store or default_store()
    queue = queue or default_queue()
    statistics = store.statistics(now=clock.now(), hours=window_hours, recent=recent)
    notes = statistics.recent_failures
    status_now = store.current_statuses(note.message_id for note in notes) if notes else {}
    counts = [(status, statistics.counts.get(status, 0)) for status in Status]
    return DashboardSummary(
        counts=counts,
        total=sum(count for _, count in counts),
        queue_depth=queue.depth(),
        recent_failures=[RecentFailure(note, status_now.get(note.message_id)) for note in notes],
        top_failing_hosts=list(statistics.failures_by_host.items())[:hosts],
        window_hours=window_hours,
        attempts_by_hour=statistics.attempts_by_hour[-window_hours:],
    )


@dataclass(frozen=True)
class MessageBrowsePage:
    messages: list[Message]
    older_cursor: str | None = None
    newer_cursor: str | None = None
    exact_match: bool = False  # the search named messages by id or idempotency key


_HOST = re.compile(r"\[?[A-Za-z0-9.:-]+\]?")  # host names, IPv4 and IPv6 literals (fullmatch)


def message_browse(
    *,
    status: Status | None = None,
    producer_id: str | None = None,
    search: str = "",
    cursor: str | None = None,
    limit: int = 50,
    store: MessageStore | None = None,
) -> MessageBrowsePage:
    """The operator's message list, newest first, with "older" and "newer" cursors.

    `search` is a message id or an idempotency key (direct reads: the id of a keyed message is
    derived from its producer and key, so each producer costs one key in a BatchGetItem), or else
    a target host (a filter over the index pages; see `MessageStore.list_messages`).
    Raises InvalidCursor for a cursor this function did not make.
    """
    store = store or default_store()
    search = search.strip()
    if search:
        producers = [producer_id] if producer_id else list(producer_names())
        candidates = [search] + [
            message_id_for(producer_id=producer, idempotency_key=search) for producer in producers
        ]
        found = [
            message
            for message in store.get_many(candidates)
            if (message.id == search or message.idempotency_key == search)
            and (status is None or message.status == status)
            and (producer_id is None or message.producer_id == producer_id)
        ]
        if found:
            found.sort(key=store.position, reverse=True)
            return MessageBrowsePage(found, exact_match=True)
        if not _HOST.fullmatch(search):
            return MessageBrowsePage([])
    filters = {
        "status": status,
        "producer_id": producer_id,
        "target_host": search.strip("[]").lower() or None,
    }
    direction, position = (
        _decode_position(cursor, ("before", "after"), "The cursor is not one this page gave.")
        if cursor
        else ("before", "")
    )
    bounds = {"after": position} if direction == "after" else {"before": position or None}
    messages, older, newer = store.browse(**filters, limit=limit, **bounds)
    return MessageBrowsePage(
        messages,
        _encode_position("before", older) if older else None,
        _encode_position("after", newer) if newer else None,
    )


@dataclass(frozen=True)
class MessageDetail:
    message: Message
    attempts: list[Attempt]
    url_shown: str  # secret-looking query parameters masked
    headers_as_sent: dict[str, str]  # secrets masked
    body: str  # JSON bodies indented


def message_detail(*, message_id: str, store: MessageStore | None = None) -> MessageDetail:
    """A message for an operator: the request as the worker will send it (secret-looking header
    values and URL parameters masked), its attempts in order. Raises MessageNotFound."""
    message, attempts = message_get(message_id=message_id, store=store)
    body = message.request.body or ""
    if message.request.body_is_json and body:
        try:
            body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pass  # shown as stored
    return MessageDetail(
        message=message,
        attempts=sorted(attempts, key=lambda attempt: attempt.number),
        url_shown=mask_url(message.request.url),
        headers_as_sent=mask_headers(outgoing_headers(message.request, message.id)),
        body=body,
    )


def messages_by_id(
    message_ids: list[str], *, store: MessageStore | None = None
) -> list[tuple[str, Message | None]]:
    """Each id with its message (None when there is none), in the order given."""
    store = store or default_store()
    found = {message.id: message for message in store.get_many(message_ids)}
    return [(message_id, found.get(message_id)) for message_id in dict.fromkeys(message_ids)]
