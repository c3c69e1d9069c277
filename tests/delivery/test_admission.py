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
    first = admission.try_admit("slow.example", is_retry=False)
    second = admission.try_admit("slow.example", is_retry=False)
    assert first and second
    assert admission.try_admit("slow.example", is_retry=False) is None
    assert admission.try_admit("fast.example", is_retry=False) is not None
    admission.release(first)
    assert admission.try_admit("slow.example", is_retry=False) is not None


def test_retries_get_a_bounded_share_and_first_attempts_are_never_blocked_by_them():
    admission = Admission(max_per_host=100, max_retries=2, monotonic=FakeMonotonic())
    retries = [admission.try_admit(f"h{n}", is_retry=True) for n in range(2)]
    assert all(retries)
    assert admission.try_admit("h9", is_retry=True) is None
    assert admission.try_admit("h9", is_retry=False) is not None
    admission.release(retries[0])
    assert admission.try_admit("h9", is_retry=True) is not None


def test_deferral_follows_the_hosts_call_time():
    admission = Admission(max_per_host=1, max_retries=1, monotonic=FakeMonotonic())
    assert admission.defer_seconds("new.example") == MIN_DEFER_SECONDS
    for _ in range(20):
        admission.release(admission.try_admit("hang.example", is_retry=False), seconds=30.0)
    assert 25 <= admission.defer_seconds("hang.example") <= 30
    for _ in range(20):
        admission.release(admission.try_admit("hang.example", is_retry=False), seconds=900.0)
    assert admission.defer_seconds("hang.example") == MAX_DEFER_SECONDS


def test_a_host_that_has_not_answered_yet_is_deferred_by_how_long_its_calls_run():
    clock = FakeMonotonic()
    admission = Admission(max_per_host=1, max_retries=1, monotonic=clock)
    ticket = admission.try_admit("hang.example", is_retry=False)
    clock.advance(1.3)  # no call has finished: the oldest one running sets the pace
    assert admission.defer_seconds("hang.example") >= 1.3
    admission.release(ticket)
    assert admission.defer_seconds("other.example") == MIN_DEFER_SECONDS


def test_a_busy_hosts_backlog_is_deferred_until_about_its_turn():
    clock = FakeMonotonic()
    admission = Admission(max_per_host=100, max_retries=100, monotonic=clock)
    for _ in range(5):
        admission.try_admit("busy.example", is_retry=False)
        clock.advance(0.1)
    # About 5 starts in 0.5 s: 10 a second, so 100 messages ahead take about 10 s.
    assert 6 <= admission.defer_seconds("busy.example", ahead=100) <= 14
    assert admission.defer_seconds("busy.example") == MIN_DEFER_SECONDS  # nothing ahead


def test_subdomains_of_one_site_share_the_host_limit():
    """Random subdomains of one registrable domain do not get around the per-host limit."""
    admission = Admission(max_per_host=2, max_retries=10, monotonic=FakeMonotonic())
    assert admission.try_admit("a1.wild.example.com", is_retry=False)
    assert admission.try_admit("b2.wild.example.com", is_retry=False)
    assert admission.try_admit("c3.example.com", is_retry=False) is None
    assert admission.try_admit("x.hooks.example.co.uk", is_retry=False)  # another site
    assert admission.try_admit("10.0.0.1", is_retry=False)  # an address is its own site
    assert admission.try_admit("10.0.0.2", is_retry=False)


def test_a_producer_takes_at_most_its_share_while_another_is_active():
    clock = FakeMonotonic()
    admission = Admission(max_per_host=100, max_retries=100, max_per_producer=2, monotonic=clock)
    # Alone, a producer may use every slot.
    alone = [
        admission.try_admit(f"h{n}.example", is_retry=False, producer="prd_a") for n in range(4)
    ]
    assert all(alone)
    # Once another producer is active, the first gets no more than its share...
    assert admission.try_admit("b.example", is_retry=False, producer="prd_b")
    assert admission.try_admit("h9.example", is_retry=False, producer="prd_a") is None
    for ticket in alone[:3]:
        admission.release(ticket)
    assert admission.try_admit("h9.example", is_retry=False, producer="prd_a")  # 2 in flight
    assert admission.try_admit("h8.example", is_retry=False, producer="prd_a") is None
    # ...until the other has been quiet for the activity window.
    clock.advance(61)
    assert admission.try_admit("h8.example", is_retry=False, producer="prd_a")


def test_what_is_remembered_of_hosts_is_bounded():
    admission = Admission(
        max_per_host=1, max_retries=1, monotonic=FakeMonotonic(), max_hosts_remembered=100
    )
    busy = admission.try_admit("busy.example", is_retry=False)
    for n in range(5000):
        admission.release(admission.try_admit(f"host{n}.test", is_retry=False), seconds=0.1)
    assert admission.hosts_remembered <= 101
    assert admission.in_flight("busy.example") == 1  # a host with a call in flight is kept
    admission.release(busy, seconds=5.0)
    assert admission.defer_seconds("busy.example") >= 1.0
