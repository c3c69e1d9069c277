"""Target hosts' shared state in the table: circuit, pause, the workers' shares of an in-flight
limit, and the record of transitions. Items of their own, small, in no listing index:

  pk = HOST#<host>, sk = STATE        the host's state (`hosts.HostState`): consecutive failures,
                                      circuit, pause, and one `slot:<worker>` lease per worker that
                                      holds or wants part of the in-flight limit
  pk = HOST#<host>, sk = EVENT#<at>#… one transition (who, when, why); expires after 30 days
  pk = HOSTS,       sk = GUARDED      the names of hosts whose circuit is not closed or that are
                                      paused, so the dashboard reads them without a scan

Every change of circuit is one conditional UpdateItem naming the state it leaves, so of the
workers that race to open a circuit, take its probe or end it, exactly one wins and records the
transition. Rate tokens are not here: they are `allowances` windows named `host:<host>`.

The event and the GUARDED set are written after the state, best effort: the state item is the
truth; a dashboard that misses a host because that second write failed sees it at its next
transition (a cool-off later at the most).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from notifications import aws
from notifications.domain import format_timestamp
from notifications.hosts import Circuit, HostEvent, HostState, SlotLease, Transition
from notifications.store.items import deserialize, serialize
from notifications.store.table import Table

logger = logging.getLogger(__name__)

STATE_SK = "STATE"
EVENT_SK_PREFIX = "EVENT#"
REGISTRY_KEY = {"pk": "HOSTS", "sk": "GUARDED"}
SLOT_PREFIX = "slot:"
EVENT_RETENTION = timedelta(days=30)
# The state a circuit-changing write leaves behind, by the fields it removes.
_PROBE_FIELDS = ("probe_token", "probe_until")


def host_key(host: str, sort_key: str = STATE_SK) -> dict[str, Any]:
    return serialize({"pk": f"HOST#{host}", "sk": sort_key})


def state_of(host: str, item: Mapping[str, Any] | None) -> HostState:
    """A HostState from its item (attribute-value form); a host without one is closed and free."""
    if not item:
        return HostState(host)
    data = deserialize(item)
    slots = {
        name[len(SLOT_PREFIX) :]: SlotLease(
            held=int(value.get("held", 0)),
            wanted=int(value.get("wanted", 0)),
            until=float(value.get("until", 0)),
        )
        for name, value in data.items()
        if name.startswith(SLOT_PREFIX) and isinstance(value, Mapping)
    }
    cool_off = data.get("cool_off_seconds")
    return HostState(
        host=host,
        failures=int(data.get("failures", 0)),
        circuit=Circuit(data.get("circuit", Circuit.CLOSED.value)),
        circuit_since=data.get("circuit_since"),
        circuit_reason=data.get("circuit_reason", ""),
        circuit_by=data.get("circuit_by", ""),
        open_until=data.get("open_until"),
        cool_off_seconds=float(cool_off) if cool_off is not None else None,
        probe_token=data.get("probe_token"),
        probe_until=data.get("probe_until"),
        paused_since=data.get("paused_since"),
        paused_until=data.get("paused_until"),
        paused_reason=data.get("paused_reason", ""),
        paused_by=data.get("paused_by", ""),
        slots_version=int(data.get("slots_version", 0)),
        slots=slots,
    )


class HostStates:
    def __init__(self, table: Table) -> None:
        self._table = table

    # -- reads ------------------------------------------------------------------------------

    def read(self, host: str) -> HostState:
        """The host's state, strongly consistent (one GetItem)."""
        response = self._table.call("get_item", Key=host_key(host), ConsistentRead=True)
        return state_of(host, response.get("Item"))

    def read_many(self, hosts: Iterable[str]) -> dict[str, HostState]:
        """The states of `hosts` (one eventually consistent BatchGetItem per 100)."""
        wanted = list(dict.fromkeys(hosts))
        found = {
            item["pk"]["S"][len("HOST#") :]: item
            for item in self._table.batch_get([{"pk": f"HOST#{h}", "sk": STATE_SK} for h in wanted])
        }
        return {host: state_of(host, found.get(host)) for host in wanted}

    def guarded(self) -> list[HostState]:
        """The states of the hosts in the GUARDED set (open, half-open or paused when last
        changed; the caller checks what holds now)."""
        response = self._table.call("get_item", Key=serialize(REGISTRY_KEY))
        hosts = sorted(deserialize(response.get("Item") or {}).get("hosts") or ())
        return list(self.read_many(hosts).values()) if hosts else []

    def events(self, host: str, *, limit: int = 20) -> list[HostEvent]:
        """The host's latest transitions, newest first (one Query)."""
        response = self._table.call(
            "query",
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=serialize(
                {":pk": f"HOST#{host}", ":prefix": EVENT_SK_PREFIX}
            ),
            ScanIndexForward=False,
            Limit=limit,
        )
        events = []
        for item in response.get("Items", []):
            data = deserialize(item)
            events.append(
                HostEvent(
                    host=host,
                    transition=Transition(data["transition"]),
                    at=data["at"],
                    actor=data.get("actor", ""),
                    reason=data.get("reason", ""),
                )
            )
        return events

    # -- failures ---------------------------------------------------------------------------

    def record_failure(self, host: str) -> HostState:
        """Count one failed call (ADD, so concurrent workers never lose a count); the state as it
        is after it."""
        response = self._table.call(
            "update_item",
            Key=host_key(host),
            UpdateExpression="ADD failures :one",
            ExpressionAttributeValues=serialize({":one": 1}),
            ReturnValues="ALL_NEW",
        )
        return state_of(host, response["Attributes"])

    def reset_failures(self, host: str) -> None:
        """A call succeeded: the consecutive failures start again from 0 (only written while
        there are some, so a healthy host costs nothing here)."""
        try:
            self._table.call(
                "update_item",
                Key=host_key(host),
                UpdateExpression="SET failures = :zero",
                ConditionExpression="failures > :zero",
                ExpressionAttributeValues=serialize({":zero": 0}),
            )
        except aws.ConditionFailed:
            pass  # already 0

    # -- the circuit ------------------------------------------------------------------------

    def open_circuit(
        self,
        host: str,
        *,
        threshold: int,
        now: datetime,
        cool_off: float,
        actor: str,
        reason: str,
    ) -> HostState | None:
        """CLOSED -> OPEN for `cool_off` seconds, only while the circuit is closed and the
        consecutive failures reach `threshold`: of several workers that see the threshold
        crossed, one opens it. None when another did (or a success reset the count)."""
        return self._change_circuit(
            host,
            transition=Transition.OPENED,
            now=now,
            actor=actor,
            reason=reason,
            sets={
                "circuit": Circuit.OPEN.value,
                "open_until": format_timestamp(now + timedelta(seconds=cool_off)),
                "cool_off_seconds": Decimal(str(cool_off)),
            },
            removes=_PROBE_FIELDS,
            condition="(attribute_not_exists(circuit) OR circuit = :closed) AND failures >= :n",
            values={":closed": Circuit.CLOSED.value, ":n": threshold},
        )

    def take_probe(
        self, host: str, *, now: datetime, lease_seconds: float, actor: str
    ) -> HostState | None:
        """OPEN (cool-off over) -> HALF_OPEN, with a probe token for the one call that may go;
        also re-takes a probe whose holder let its lease run out. None when another worker took
        it, or it is not due. The returned state carries the winner's token."""
        stamp = format_timestamp(now)
        return self._change_circuit(
            host,
            transition=Transition.HALF_OPENED,
            now=now,
            actor=actor,
            reason="cool-off over: one probe call",
            sets={
                "circuit": Circuit.HALF_OPEN.value,
                "probe_token": secrets.token_hex(8),
                "probe_until": format_timestamp(now + timedelta(seconds=lease_seconds)),
            },
            condition=(
                "(circuit = :open AND (attribute_not_exists(open_until) OR open_until <= :now))"
                " OR (circuit = :half AND (attribute_not_exists(probe_until)"
                " OR probe_until <= :now))"
            ),
            values={
                ":open": Circuit.OPEN.value,
                ":half": Circuit.HALF_OPEN.value,
                ":now": stamp,
            },
        )

    def end_probe(
        self,
        host: str,
        *,
        token: str,
        succeeded: bool,
        now: datetime,
        cool_off: float,
        actor: str,
        reason: str,
    ) -> HostState | None:
        """HALF_OPEN -> CLOSED (the probe succeeded; failures start again from 0), or -> OPEN
        for `cool_off` seconds (it failed), only by the holder of the probe `token`."""
        if succeeded:
            sets: dict[str, Any] = {"circuit": Circuit.CLOSED.value, "failures": 0}
            removes: tuple[str, ...] = (*_PROBE_FIELDS, "open_until", "cool_off_seconds")
            transition = Transition.CLOSED
        else:
            sets = {
                "circuit": Circuit.OPEN.value,
                "open_until": format_timestamp(now + timedelta(seconds=cool_off)),
                "cool_off_seconds": Decimal(str(cool_off)),
            }
            removes = _PROBE_FIELDS
            transition = Transition.REOPENED
        return self._change_circuit(
            host,
            transition=transition,
            now=now,
            actor=actor,
            reason=reason,
            sets=sets,
            removes=removes,
            condition="circuit = :half AND probe_token = :token",
            values={":half": Circuit.HALF_OPEN.value, ":token": token},
        )

    def give_back_probe(self, host: str, *, token: str, now: datetime) -> bool:
        """The probe's holder made no call (its message was gone or not claimable): HALF_OPEN
        -> OPEN, due at once, so that another waiting message can be the probe. Not an event."""
        try:
            self._table.call(
                "update_item",
                Key=host_key(host),
                UpdateExpression="SET circuit = :open, open_until = :now "
                "REMOVE probe_token, probe_until",
                ConditionExpression="circuit = :half AND probe_token = :token",
                ExpressionAttributeValues=serialize(
                    {
                        ":open": Circuit.OPEN.value,
                        ":now": format_timestamp(now),
                        ":half": Circuit.HALF_OPEN.value,
                        ":token": token,
                    }
                ),
            )
        except aws.ConditionFailed:
            return False
        return True

    def close_by_operator(
        self, host: str, *, now: datetime, actor: str, reason: str
    ) -> HostState | None:
        """OPEN or HALF_OPEN -> CLOSED by hand; None when it was closed already."""
        return self._change_circuit(
            host,
            transition=Transition.CLOSED_BY_OPERATOR,
            now=now,
            actor=actor,
            reason=reason,
            sets={"circuit": Circuit.CLOSED.value, "failures": 0},
            removes=(*_PROBE_FIELDS, "open_until", "cool_off_seconds"),
            condition="circuit IN (:open, :half)",
            values={":open": Circuit.OPEN.value, ":half": Circuit.HALF_OPEN.value},
        )

    def _change_circuit(
        self,
        host: str,
        *,
        transition: Transition,
        now: datetime,
        actor: str,
        reason: str,
        sets: Mapping[str, Any],
        condition: str,
        values: Mapping[str, Any],
        removes: Iterable[str] = (),
    ) -> HostState | None:
        stamp = format_timestamp(now)
        assigned = {
            **sets,
            "circuit_since": stamp,
            "circuit_reason": reason[:500],
            "circuit_by": actor[:200],
        }
        expression = "SET " + ", ".join(f"{name} = :set_{name}" for name in assigned)
        removed = list(removes)
        if removed:
            expression += " REMOVE " + ", ".join(removed)
        try:
            response = self._table.call(
                "update_item",
                Key=host_key(host),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=serialize(
                    {**{f":set_{name}": value for name, value in assigned.items()}, **values}
                ),
                ReturnValues="ALL_NEW",
            )
        except aws.ConditionFailed:
            return None  # another worker (or operator) changed it first
        state = state_of(host, response["Attributes"])
        self._after_transition(state, HostEvent(host, transition, stamp, actor, reason), now)
        return state

    # -- pause ------------------------------------------------------------------------------

    def pause(
        self, host: str, *, now: datetime, until: datetime | None, actor: str, reason: str
    ) -> HostState:
        """Pause the host (or change a pause's end and reason): nothing is sent to it until it
        is resumed or `until` passes."""
        stamp = format_timestamp(now)
        assigned: dict[str, Any] = {
            "paused_since": stamp,
            "paused_reason": reason[:500],
            "paused_by": actor[:200],
        }
        expression = "SET " + ", ".join(f"{name} = :{name}" for name in assigned)
        if until is not None:
            assigned["paused_until"] = format_timestamp(until)
            expression += ", paused_until = :paused_until"
        else:
            expression += " REMOVE paused_until"
        response = self._table.call(
            "update_item",
            Key=host_key(host),
            UpdateExpression=expression,
            ExpressionAttributeValues=serialize({f":{name}": v for name, v in assigned.items()}),
            ReturnValues="ALL_NEW",
        )
        state = state_of(host, response["Attributes"])
        self._after_transition(state, HostEvent(host, Transition.PAUSED, stamp, actor, reason), now)
        return state

    def resume(self, host: str, *, now: datetime, actor: str, reason: str) -> HostState | None:
        """End a pause; None when the host was not paused."""
        try:
            response = self._table.call(
                "update_item",
                Key=host_key(host),
                UpdateExpression="REMOVE paused_since, paused_until, paused_reason, paused_by",
                ConditionExpression="attribute_exists(paused_since)",
                ReturnValues="ALL_NEW",
            )
        except aws.ConditionFailed:
            return None
        state = state_of(host, response["Attributes"])
        stamp = format_timestamp(now)
        self._after_transition(
            state, HostEvent(host, Transition.RESUMED, stamp, actor, reason), now
        )
        return state

    # -- shares of the in-flight limit ------------------------------------------------------

    def lease_slots(
        self,
        host: str,
        *,
        worker: str,
        held: int,
        wanted: int,
        until: float,
        seen: HostState,
        expired: Iterable[str] = (),
    ) -> tuple[bool, HostState]:
        """Record worker's share (`held` slots and `wanted` more, until `until`, epoch seconds;
        both 0: remove it), and drop the `expired` leases of other workers, only if no share
        changed since `seen` (its `slots_version`): the writer computed its share from what the
        others hold, so a concurrent change must make it compute again. Returns whether it was
        written, and the state now (the refused write's ALL_OLD when not)."""
        names = {"#mine": f"{SLOT_PREFIX}{worker}"}
        values: dict[str, Any] = {":next": seen.slots_version + 1}
        assignments = ["slots_version = :next"]
        removals = []
        if held or wanted:
            values[":lease"] = {"held": held, "wanted": wanted, "until": Decimal(f"{until:.3f}")}
            assignments.append("#mine = :lease")
        else:
            removals.append("#mine")
        for position, other in enumerate(w for w in expired if w != worker):
            names[f"#x{position}"] = f"{SLOT_PREFIX}{other}"
            removals.append(f"#x{position}")
        if seen.slots_version:
            condition = "slots_version = :seen"
            values[":seen"] = seen.slots_version
        else:
            condition = "attribute_not_exists(slots_version)"
        expression = "SET " + ", ".join(assignments)
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        try:
            response = self._table.call(
                "update_item",
                Key=host_key(host),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws.ConditionFailed as failure:
            return False, state_of(host, failure.item)
        return True, state_of(host, response["Attributes"])

    # -- the record -------------------------------------------------------------------------

    def _after_transition(self, state: HostState, event: HostEvent, now: datetime) -> None:
        """Record the event and keep the GUARDED set in step (best effort; see the module)."""
        expires = int((now + EVENT_RETENTION).timestamp())
        try:
            self._table.call(
                "put_item",
                Item=serialize(
                    {
                        "pk": f"HOST#{event.host}",
                        "sk": f"{EVENT_SK_PREFIX}{event.at}#{secrets.token_hex(3)}",
                        "transition": event.transition.value,
                        "at": event.at,
                        "actor": event.actor[:200],
                        "reason": event.reason[:500],
                        "expires_at": expires,
                    }
                ),
            )
            operation = "ADD" if state.guarded_at(now) else "DELETE"
            self._table.call(
                "update_item",
                Key=serialize(REGISTRY_KEY),
                UpdateExpression=f"{operation} hosts :host",
                ExpressionAttributeValues={":host": {"SS": [state.host]}},
            )
        except aws.AWSUnavailable as error:
            logger.warning(
                "host %s: %s not fully recorded: %s", state.host, event.transition, error
            )
