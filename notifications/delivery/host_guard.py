"""Fleet-wide protection of target hosts, as one worker process applies it: host policies (limits
on calls in flight and per second across every worker, circuit-breaker thresholds), circuit
breaking, and operators' pauses.

What is shared lives in the table (`store.hosts`, `store.allowances`); this module keeps a view
of it per host and decides from that view alone, so that admission (`delivery.admission`, which
asks `try_admit` with its lock held, also for messages in the waiting line) never waits for AWS.
A background thread (`start`) does the AWS work and wakes the worker when a waiting message may
go:
- every HOST_STATE_REFRESH_SECONDS it re-reads the state of the hosts this worker has work for
  (one BatchGetItem for up to 100 hosts) and the policies (one SQL query);
- it takes the probe of an open circuit whose cool-off is over, when it has a message to send;
- it keeps this worker's share of a host's in-flight limit (a lease on part of the limit,
  written to the host's state item under a version check so that the shares never add up to
  more than the limit; renewed before it ends, given back when the worker has nothing more for
  the host, and fair: while other workers wait, a worker holds at most an even share);
- it takes rate tokens in chunks (`allowances`, one conditional UpdateItem per chunk).

The delivery thread reports each call's outcome (`record_call`): a failed call is counted in the
host's state (one UpdateItem), and the count reaching the threshold opens the circuit for every
worker; a success after failures resets the count. While a host has been failing, every call
first reads the host's state (`confirm`, one strongly consistent GetItem), so a worker that knows
a host is failing never starts a call after another worker opened the circuit. A healthy host
costs no call per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from notifications import metrics
from notifications.aws import AWSUnavailable
from notifications.clock import Clock, system_clock
from notifications.domain import parse_timestamp
from notifications.hosts import Circuit, HostLimits, HostState, Transition, fair_share
from notifications.store.allowances import Allowances
from notifications.store.hosts import HostStates

logger = logging.getLogger(__name__)

# A view older than this many refresh intervals is not decided on (the refresher is stuck, or
# AWS is unreachable): the host's messages wait.
STALE_AFTER_INTERVALS = 3
# A host nothing was asked about for this long is no longer refreshed (and later forgotten).
INTEREST_SECONDS = 30.0
FORGET_SECONDS = 300.0
# A share is used locally until this long before its lease ends in the table.
LEASE_MARGIN_SECONDS = 2.0
# The longest a message held back by a pause or an open circuit is deferred through SQS.
MAX_PAUSE_DEFER_SECONDS = 60.0
MAX_OPEN_DEFER_SECONDS = 300.0

PolicyLoader = Callable[[], dict[str, HostLimits]]


@dataclass
class HostPass:
    """Admission's permission for one call to `host`. `probe`: the token of the half-open probe
    this call is; `needs_check`: read the host's state before the call (`confirm`); `window`:
    the rate window whose token it used."""

    host: str
    probe: str | None = None
    needs_check: bool = False
    window: int | None = None
    confirmed: bool = False
    reported: bool = False


@dataclass
class _View:
    """What this worker knows and holds of one host. Guarded by the guard's lock."""

    state: HostState | None = None
    read_at: float = float("-inf")  # monotonic
    needs_read: bool = True
    suspect: bool = False  # calls have been failing: check the state before each call
    in_use: int = 0
    share: int = 0  # slots of the in-flight limit this worker may use (recorded in the table)
    share_until: float = 0.0  # monotonic
    recorded: tuple[int, int] = (0, 0)  # (held, wanted) as last written
    idle_since: float | None = None
    tokens: int = 0
    tokens_window: int = -1
    blocked_window: int = -1  # the rate window that had no token left
    wants_slot: bool = False
    wants_tokens: bool = False
    probe: str | None = None  # a probe taken, not yet given to a call
    give_back: list[str] = field(default_factory=list)
    asked_at: float = float("-inf")  # monotonic: when admission last asked about the host


class HostGuard:
    def __init__(
        self,
        *,
        states: HostStates,
        allowances: Allowances,
        load_policies: PolicyLoader,
        defaults: HostLimits,
        worker_id: str,
        refresh_seconds: float = 2.0,
        slot_lease_seconds: float = 60.0,
        probe_lease_seconds: float = 40.0,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._states = states
        self._allowances = allowances
        self._load_policies = load_policies
        self.defaults = defaults
        self.worker_id = worker_id
        self.refresh_seconds = refresh_seconds
        self.slot_lease_seconds = max(slot_lease_seconds, 3 * LEASE_MARGIN_SECONDS)
        self.probe_lease_seconds = probe_lease_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._views: dict[str, _View] = {}
        self._policies: dict[str, HostLimits] = {}
        self._policies_at = float("-inf")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_for: Callable[[str], int] = lambda host: 0
        self._on_change: Callable[[], None] = lambda: None

    @property
    def actor(self) -> str:
        return f"worker:{self.worker_id}"

    def attach(self, *, waiting_for: Callable[[str], int], on_change: Callable[[], None]) -> None:
        """The worker's side: how many messages wait for a host, and what to call when waiting
        messages may now go (never called with the guard's lock held)."""
        self._waiting_for = waiting_for
        self._on_change = on_change

    def limits(self, host: str) -> HostLimits:
        return self._policies.get(host, self.defaults)

    # -- admission (local, never AWS) -------------------------------------------------------

    def try_admit(self, host: str) -> HostPass | None:
        """A pass when a call to `host` may start now, from this worker's view alone; None when
        it must wait (paused, circuit open, no share of its limits free, or not known yet: the
        refresher is asked to look)."""
        now = self._monotonic()
        wall = self._clock.now()
        limits = self.limits(host)
        with self._lock:
            view = self._views.setdefault(host, _View())
            view.asked_at = now
            state = view.state
            if state is None or now - view.read_at > STALE_AFTER_INTERVALS * self.refresh_seconds:
                view.needs_read = True
                self._wake.set()
                return None
            if state.paused_at(wall):
                return None
            probe = None
            if state.circuit != Circuit.CLOSED:
                if view.probe is None:
                    if state.probe_due(wall):
                        self._wake.set()
                    return None
                probe = view.probe
            if limits.max_in_flight and (view.in_use >= view.share or now >= view.share_until):
                view.wants_slot = True
                self._wake.set()
                return None
            window = None
            if limits.max_per_second:
                current = int(wall.timestamp())
                if view.tokens_window != current or view.tokens <= 0:
                    if view.blocked_window != current:
                        view.wants_tokens = True
                        self._wake.set()
                    return None
                view.tokens -= 1
                window = current
            view.probe = None
            view.in_use += 1
            view.idle_since = None
            return HostPass(
                host, probe=probe, needs_check=view.suspect and not probe, window=window
            )

    def release(self, host_pass: HostPass) -> None:
        """The pass's call ended, or never happened: its slot frees; an unused rate token goes
        back to this worker's chunk, an unused probe back to the table (by the refresher)."""
        with self._lock:
            view = self._views.setdefault(host_pass.host, _View())
            view.in_use = max(0, view.in_use - 1)
            if host_pass.reported:
                return
            if host_pass.window is not None and view.tokens_window == host_pass.window:
                view.tokens += 1
            if host_pass.probe is not None:
                view.give_back.append(host_pass.probe)
                self._wake.set()

    def wait_seconds(self, host: str) -> float:
        """How long a message held back by the host's state should be deferred, when it cannot
        wait in the worker's line: until a pause or an open circuit may end (capped, so that a
        resume or a closed circuit reaches deferred messages within a minute or five)."""
        wall = self._clock.now()
        with self._lock:
            view = self._views.get(host)
            state = view.state if view else None
        if state is None:
            return 0.0
        if state.paused_at(wall):
            if state.paused_until is None:
                return MAX_PAUSE_DEFER_SECONDS
            return min(MAX_PAUSE_DEFER_SECONDS, _seconds_between(wall, state.paused_until))
        if state.circuit == Circuit.OPEN and state.open_until:
            return min(MAX_OPEN_DEFER_SECONDS, _seconds_between(wall, state.open_until))
        if state.circuit == Circuit.HALF_OPEN:
            return min(MAX_PAUSE_DEFER_SECONDS, _seconds_between(wall, state.probe_until))
        return 0.0

    # -- the delivery thread (AWS) ----------------------------------------------------------

    def confirm(self, host_pass: HostPass) -> bool:
        """Just before the call (the message claimed): for a host that has been failing, read its
        state (strongly consistent) and go only if its circuit is still closed and it is not
        paused."""
        if not host_pass.needs_check or host_pass.confirmed:
            return True
        state = self._states.read(host_pass.host)
        wall = self._clock.now()
        with self._lock:
            view = self._views.setdefault(host_pass.host, _View())
            view.state, view.read_at = state, self._monotonic()
            view.suspect = state.failures > 0
        host_pass.confirmed = state.circuit == Circuit.CLOSED and not state.paused_at(wall)
        return host_pass.confirmed

    def record_call(self, host_pass: HostPass, *, failed: bool, detail: str) -> None:
        """After the call: `failed` when the host did not take it (a retryable outcome). Counts
        it toward the circuit (and opens it at the threshold), ends the probe it was, or resets
        the failure count after failures. AWS faults are logged, not raised: the delivery's
        own outcome is stored already."""
        host_pass.reported = True
        host = host_pass.host
        limits = self.limits(host)
        try:
            if host_pass.probe is not None:
                self._end_probe(host_pass, limits, failed=failed, detail=detail)
            elif failed and limits.failure_threshold > 0:
                self._count_failure(host, limits, detail=detail)
            elif not failed:
                with self._lock:
                    view = self._views.setdefault(host, _View())
                    failing = view.suspect or (view.state is not None and view.state.failures > 0)
                    view.suspect = False
                    if view.state is not None:
                        view.state = replace(view.state, failures=0)
                if failing:
                    self._states.reset_failures(host)
        except AWSUnavailable as error:
            logger.warning("host %s: call outcome not recorded for the circuit: %s", host, error)

    def _count_failure(self, host: str, limits: HostLimits, *, detail: str) -> None:
        with self._lock:
            self._views.setdefault(host, _View()).suspect = True
        state = self._states.record_failure(host)
        if state.circuit == Circuit.CLOSED and state.failures >= limits.failure_threshold:
            opened = self._states.open_circuit(
                host,
                threshold=limits.failure_threshold,
                now=self._clock.now(),  # the transition's time: just before its write
                cool_off=limits.cool_off_seconds,
                actor=self.actor,
                reason=f"{state.failures} consecutive failed calls; the last: {detail}",
            )
            if opened is not None:
                state = opened
                self._transition(host, Transition.OPENED, opened.circuit_reason)
        self._keep(host, state)

    def _end_probe(
        self, host_pass: HostPass, limits: HostLimits, *, failed: bool, detail: str
    ) -> None:
        host = host_pass.host
        assert host_pass.probe is not None
        with self._lock:
            view = self._views.get(host)
            current = view.state.cool_off_seconds if view and view.state else None
        cool_off = limits.next_cool_off(current)
        reason = (
            f"probe failed: {detail}; open for {cool_off:g} s"
            if failed
            else f"probe succeeded: {detail}"
        )
        state = self._states.end_probe(
            host,
            token=host_pass.probe,
            succeeded=not failed,
            now=self._clock.now(),
            cool_off=cool_off,
            actor=self.actor,
            reason=reason,
        )
        if state is None:  # an operator closed it meanwhile, or the probe's lease ran out
            with self._lock:
                self._views.setdefault(host, _View()).needs_read = True
            self._wake.set()
            return
        self._transition(host, Transition.REOPENED if failed else Transition.CLOSED, reason)
        with self._lock:
            self._views.setdefault(host, _View()).suspect = failed
        self._keep(host, state)
        if not failed:
            self._on_change()

    def _transition(self, host: str, transition: Transition, reason: str) -> None:
        metrics.record_host_transition(transition.value)
        log = (
            logger.warning
            if transition in (Transition.OPENED, Transition.REOPENED)
            else logger.info
        )
        log("host %s: circuit %s (%s)", host, transition.value, reason)

    def _keep(self, host: str, state: HostState) -> None:
        """A state this worker just read or wrote becomes its view."""
        with self._lock:
            view = self._views.setdefault(host, _View())
            view.state, view.read_at, view.needs_read = state, self._monotonic(), False

    # -- the refresher ----------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="host-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing and give back this worker's shares (best effort: a share not given
        back ends with its lease)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            held = [(host, view) for host, view in self._views.items() if view.recorded != (0, 0)]
        for host, view in held:
            try:
                self._write_share(host, view, held=0, wanted=0)
            except AWSUnavailable as error:
                logger.warning(
                    "host %s: share not given back (it ends with its lease): %s", host, error
                )

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                changed = self.refresh()
            except AWSUnavailable as error:
                logger.warning("host states not refreshed: %s", error)
                changed = False
            except Exception:
                logger.exception("host guard: unexpected error")
                changed = False
            if changed:
                self._on_change()
            with self._lock:
                busy = any(
                    v.wants_tokens or v.wants_slot or v.needs_read for v in self._views.values()
                )
            self._wake.wait(0.1 if busy else min(0.5, self.refresh_seconds / 2))
            self._wake.clear()

    def refresh(self) -> bool:
        """One round of the refresher; True when waiting messages may now be admitted."""
        now = self._monotonic()
        wall = self._clock.now()
        if now - self._policies_at >= self.refresh_seconds:
            self._policies = self._load_policies()
            self._policies_at = now
        with self._lock:
            for host in [h for h, v in self._views.items() if self._forgettable(v, now)]:
                del self._views[host]
            candidates = list(self._views)
        active = [host for host in candidates if self._interested(host, now)]
        with self._lock:
            due = [
                host
                for host in active
                if self._views[host].needs_read
                or now - self._views[host].read_at >= self.refresh_seconds
            ]
        changed = False
        if due:
            states = self._states.read_many(due)
            with self._lock:
                for host, state in states.items():
                    view = self._views.setdefault(host, _View())
                    view.state, view.read_at, view.needs_read = state, now, False
                    view.suspect = view.suspect or state.failures > 0
            changed = True
        for host in active:
            changed |= self._settle(host, wall, now)
        return changed

    def _interested(self, host: str, now: float) -> bool:
        with self._lock:
            view = self._views[host]
            busy = (
                view.in_use
                or view.recorded != (0, 0)
                or view.probe is not None
                or view.give_back
                or now - view.asked_at < INTEREST_SECONDS
            )
        return bool(busy) or self._waiting_for(host) > 0

    @staticmethod
    def _forgettable(view: _View, now: float) -> bool:
        return (
            now - view.asked_at > FORGET_SECONDS
            and not view.in_use
            and view.recorded == (0, 0)
            and view.probe is None
            and not view.give_back
        )

    def _settle(self, host: str, wall: datetime, now: float) -> bool:
        """The AWS work one host needs this round: probes, its share, rate tokens."""
        limits = self.limits(host)
        changed = False
        with self._lock:
            view = self._views[host]
            give_back, view.give_back = view.give_back, []
        for token in give_back:
            self._states.give_back_probe(host, token=token, now=wall)
        waiting = self._waiting_for(host)
        with self._lock:
            state, probe, in_use = view.state, view.probe, view.in_use
        if state is None:
            return False
        if probe is not None and waiting == 0 and not in_use:
            with self._lock:
                view.probe = None
            self._states.give_back_probe(host, token=probe, now=wall)
        elif probe is None and waiting > 0 and state.probe_due(wall):
            taken = self._states.take_probe(
                host, now=wall, lease_seconds=self.probe_lease_seconds, actor=self.actor
            )
            if taken is None:
                with self._lock:
                    view.needs_read = True
            else:
                with self._lock:
                    view.state, view.read_at, view.probe = taken, now, taken.probe_token
                self._transition(host, Transition.HALF_OPENED, taken.circuit_reason)
                changed = True
        if limits.max_in_flight or view.recorded != (0, 0):
            changed |= self._settle_share(host, view, limits, waiting, wall, now)
        if limits.max_per_second and view.wants_tokens:
            changed |= self._take_tokens(host, view, limits, wall)
        return changed

    def _settle_share(
        self, host: str, view: _View, limits: HostLimits, waiting: int, wall: datetime, now: float
    ) -> bool:
        """Bring this worker's recorded share of the in-flight limit in line with its demand
        and with what the other workers hold and want. True when it grew."""
        epoch = wall.timestamp()
        with self._lock:
            state, in_use = view.state, view.in_use
            demand = in_use + waiting + (1 if view.wants_slot and not waiting else 0)
            view.wants_slot = False
            if demand:
                view.idle_since = None
            elif view.idle_since is None:
                view.idle_since = now
            idle_long = (
                view.idle_since is not None and now - view.idle_since >= self.refresh_seconds
            )
        assert state is not None
        if limits.max_in_flight == 0 or (not demand and idle_long):
            held, wanted = (in_use, 0) if in_use else (0, 0)
        elif not demand:
            return False  # idle for a moment: keep the share a little longer
        else:
            held, wanted = fair_share(
                limit=limits.max_in_flight,
                state=state,
                me=self.worker_id,
                demand=demand,
                in_use=in_use,
                holding=view.recorded[0],
                now_epoch=epoch,
            )
        mine = state.slots.get(self.worker_id)
        renew = mine is not None and mine.until - epoch < self.slot_lease_seconds / 2
        if (held, wanted) == view.recorded and not renew and (mine is not None or not held):
            return False
        grew = held > view.share
        return self._write_share(host, view, held=held, wanted=wanted) and grew

    def _write_share(self, host: str, view: _View, *, held: int, wanted: int) -> bool:
        """Record this worker's share (under the version check, recomputing on a conflict).
        A share shrinks locally before it is written, grows only after."""
        limits = self.limits(host)
        for _ in range(3):
            with self._lock:
                held = max(held, view.in_use)
                view.share = min(view.share, held)
                state = view.state
            assert state is not None
            wall = self._clock.now()
            epoch = wall.timestamp()
            expired = [w for w, lease in state.slots.items() if lease.until <= epoch]
            until = epoch + self.slot_lease_seconds if (held or wanted) else 0.0
            written, now_state = self._states.lease_slots(
                host,
                worker=self.worker_id,
                held=held,
                wanted=wanted,
                until=until,
                seen=state,
                expired=expired,
            )
            with self._lock:
                view.state, view.read_at = now_state, self._monotonic()
                if written:
                    view.recorded = (held, wanted)
                    view.share = held
                    view.share_until = (
                        self._monotonic() + self.slot_lease_seconds - LEASE_MARGIN_SECONDS
                    )
                    return True
                in_use = view.in_use
            if not limits.max_in_flight or not (held or wanted):
                continue  # giving back: try again with the fresh version
            held, wanted = fair_share(
                limit=limits.max_in_flight,
                state=now_state,
                me=self.worker_id,
                demand=held + wanted,
                in_use=in_use,
                holding=mine.held if (mine := now_state.slots.get(self.worker_id)) else 0,
                now_epoch=epoch,
            )
        return False

    def _take_tokens(self, host: str, view: _View, limits: HostLimits, wall: datetime) -> bool:
        """A chunk of the host's current one-second window of rate tokens."""
        current = int(wall.timestamp())
        with self._lock:
            if view.blocked_window == current:
                return False
        granted = self._allowances.take(
            name=f"host:{host}",
            window_start=current,
            window_seconds=1,
            limit=limits.max_per_second,
            want=limits.rate_chunk,
        )
        with self._lock:
            if granted:
                view.tokens, view.tokens_window, view.wants_tokens = granted, current, False
                return True
            view.blocked_window = current
        return False


def _seconds_between(now: datetime, stamp: str | None) -> float:
    if not stamp:
        return 1.0
    return max(1.0, (parse_timestamp(stamp) - now).total_seconds())
