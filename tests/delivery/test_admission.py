"""Admission limits (pure unit; time moves on a fake monotonic clock, nothing sleeps)."""

from notifications.delivery.admission import MAX_DEFER_SECONDS, MIN_DEFER_SECONDS, Admission


class FakeMonotonic:
    """Stands in for `time.monotonic`: reads the same value until the test advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_per_host_limit_and_release():
    admission = Admission(max_per_host=2, max_retries=10, monotonic=FakeMonotonic())
    first = admission.try_admit("slow.example", retry=False)
    second = admission.try_admit("slow.example", retry=False)
    assert first and second
    assert admission.try_admit("slow.example", retry=False) is None
    assert admission.try_admit("fast.example", retry=False) is not None
    admission.release(first)
    assert admission.try_admit("slow.example", retry=False) is not None


def test_retries_get_a_bounded_share_and_first_attempts_are_never_blocked_by_them():
    admission = Admission(max_per_host=100, max_retries=2, monotonic=FakeMonotonic())
    retries = [admission.try_admit(f"h{n}", retry=True) for n in range(2)]
    assert all(retries)
    assert admission.try_admit("h9", retry=True) is None
    assert admission.try_admit("h9", retry=False) is not None
    admission.release(retries[0])
    assert admission.try_admit("h9", retry=True) is not None


def test_deferral_follows_the_hosts_call_time():
    admission = Admission(max_per_host=1, max_retries=1, monotonic=FakeMonotonic())
    assert admission.defer_seconds("new.example") == MIN_DEFER_SECONDS
    for _ in range(20):
        admission.release(admission.try_admit("hang.example", retry=False), seconds=30.0)
    assert 25 <= admission.defer_seconds("hang.example") <= 30
    for _ in range(20):
        admission.release(admission.try_admit("hang.example", retry=False), seconds=900.0)
    assert admission.defer_seconds("hang.example") == MAX_DEFER_SECONDS


def test_a_host_that_has_not_answered_yet_is_deferred_by_how_long_its_calls_run():
    clock = FakeMonotonic()
    admission = Admission(max_per_host=1, max_retries=1, monotonic=clock)
    ticket = admission.try_admit("hang.example", retry=False)
    clock.advance(1.3)  # no call has finished: the oldest one running sets the pace
    assert admission.defer_seconds("hang.example") >= 1.3
    admission.release(ticket)
    assert admission.defer_seconds("other.example") == MIN_DEFER_SECONDS


def test_a_busy_hosts_backlog_is_deferred_until_about_its_turn():
    clock = FakeMonotonic()
    admission = Admission(max_per_host=100, max_retries=100, monotonic=clock)
    for _ in range(5):
        admission.try_admit("busy.example", retry=False)
        clock.advance(0.1)
    # About 5 starts in 0.5 s: 10 a second, so 100 messages ahead take about 10 s.
    assert 6 <= admission.defer_seconds("busy.example", ahead=100) <= 14
    assert admission.defer_seconds("busy.example") == MIN_DEFER_SECONDS  # nothing ahead
