"""Target hosts from the command line: show their state, set a policy, pause, resume, and pull
their scheduled retries forward ("deliver now")."""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from notifications import selectors, services
from notifications.aws import AWSUnavailable
from notifications.clock import system_clock
from notifications.hosts import HostState, InvalidHost


def _moment(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None or moment.tzinfo is None:
        raise CommandError(f"not an ISO 8601 date-time with a zone: {text!r}")
    return moment


DEFAULT = "default"


def _limit(text: str) -> int | str:
    """A policy value: a whole number, or `default` (the setting's)."""
    if text == DEFAULT:
        return DEFAULT
    if not text.isdigit():
        raise CommandError(f"give a whole number or 'default', not {text!r}")
    return int(text)


class Command(BaseCommand):
    help = "Target hosts: show, policy, pause, resume, deliver-now."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        show = actions.add_parser(
            "show",
            help="A host's state, policy and events; or every "
            "host that is held back, and every policy.",
        )
        show.add_argument("host", nargs="?")

        policy = actions.add_parser(
            "policy",
            help="Set (or --clear) a host's policy; values "
            "are whole numbers, 'default' for the setting's, 0 for none.",
        )
        policy.add_argument("host")
        policy.add_argument("--max-in-flight", type=_limit)
        policy.add_argument("--max-per-second", type=_limit)
        policy.add_argument("--failure-threshold", type=_limit)
        policy.add_argument("--cool-off", type=_limit, dest="cool_off_seconds")
        policy.add_argument("--note")
        policy.add_argument("--clear", action="store_true", help="Remove the policy.")

        pause = actions.add_parser("pause", help="Send nothing to the host until resumed.")
        pause.add_argument("host")
        pause.add_argument("--reason", required=True)
        until = pause.add_mutually_exclusive_group()
        until.add_argument("--until", type=_moment, help="End (ISO 8601, with zone).")
        until.add_argument("--minutes", type=float, help="End this many minutes from now.")

        resume = actions.add_parser("resume", help="End a pause.")
        resume.add_argument("host")
        resume.add_argument("--reason", default="resumed from the command line")

        now = actions.add_parser(
            "deliver-now",
            help="Close the host's circuit if open and pull its scheduled retries forward.",
        )
        now.add_argument("host")
        now.add_argument("--reason", required=True, help="Recorded in each message's history.")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = f"operator:{getpass.getuser()} (host)"
        action = options["action"]
        try:
            if action == "show":
                self._show(options["host"])
            elif action == "policy":
                self._policy(options)
            elif action == "pause":
                until = options["until"]
                if options["minutes"] is not None:
                    until = system_clock.now() + timedelta(minutes=options["minutes"])
                state = services.host_pause(
                    host=options["host"], actor=actor, reason=options["reason"], until=until
                )
                self.stdout.write(f"{state.host}: paused" + _until(state))
            elif action == "resume":
                resumed = services.host_resume(
                    host=options["host"], actor=actor, reason=options["reason"]
                )
                self.stdout.write("resumed" if resumed is not None else "was not paused")
            else:
                report = services.host_deliver_now(
                    host=options["host"], actor=actor, reason=options["reason"]
                )
                for message_id in report.pulled:
                    self.stdout.write(f"  {message_id}")
                self.stdout.write(f"{report.host}: {report.summary()}")
        except (InvalidHost, ValueError, ValidationError) as error:
            raise CommandError(str(error)) from error
        except AWSUnavailable as error:
            raise CommandError(f"AWS unavailable: {error}") from error

    def _policy(self, options: dict[str, Any]) -> None:
        fields = ("max_in_flight", "max_per_second", "failure_threshold", "cool_off_seconds")
        values: dict[str, Any] = {
            name: None if options[name] == DEFAULT else options[name]
            for name in fields
            if options[name] is not None  # not given: left as it is
        }
        if options["note"] is not None:
            values["note"] = options["note"]
        policy = services.host_policy_set(host=options["host"], clear=options["clear"], **values)
        if policy is None:
            self.stdout.write(f"{options['host']}: policy removed (the settings' defaults apply)")
            return
        limits = selectors.limits_of(policy, selectors.default_host_limits())
        self.stdout.write(f"{policy.host}: {_describe(limits)}")

    def _show(self, host: str | None) -> None:
        now = system_clock.now()
        if host is None:
            for row in selectors.hosts_held_back():
                until = f" (until {row.until})" if row.until else ""
                self.stdout.write(
                    f"{row.host}: {row.kind} since {row.since} by {row.actor}{until}: {row.reason}"
                )
            for host_name, limits in sorted(selectors.host_policies().items()):
                self.stdout.write(f"policy {host_name}: {_describe(limits)}")
            return
        view = selectors.host_view(host=host)
        self.stdout.write(f"{view.state.host}: {_state(view.state, now)}")
        self.stdout.write(
            f"limits: {_describe(view.limits)}"
            + ("" if view.has_policy else " (the settings' defaults)")
        )
        for event in view.events:
            self.stdout.write(f"  {event.at} {event.transition} by {event.actor}: {event.reason}")


def _until(state: HostState) -> str:
    return f" until {state.paused_until}" if state.paused_until else " until resumed"


def _state(state: HostState, now: datetime) -> str:
    parts = [f"circuit {state.circuit}"]
    if state.circuit_since:
        parts[0] += f" since {state.circuit_since} ({state.circuit_reason})"
    if state.paused_at(now):
        parts.append(
            f"paused since {state.paused_since} by {state.paused_by}{_until(state)}: "
            f"{state.paused_reason}"
        )
    parts.append(f"{state.failures} consecutive failures")
    return "; ".join(parts)


def _describe(limits: Any) -> str:
    def value(number: float, unit: str) -> str:
        return f"{number:g}{unit}" if number else "no limit"

    return (
        f"in flight {value(limits.max_in_flight, '')}, per second "
        f"{value(limits.max_per_second, '')}, circuit opens after "
        f"{limits.failure_threshold or 'never'} failures, cool-off {limits.cool_off_seconds:g} s"
    )
