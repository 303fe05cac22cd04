"""Produce-to-visible latency: matching greetings to their requests by number, and the figures reported."""

import pytest

from consumer.latency import LatencyTracker, Window, summarize


class TestTracker:
    def test_times_each_greeting_against_its_own_request(self) -> None:
        tracker = LatencyTracker()
        tracker.add_request("A", 1_000)
        tracker.add_request("A", 1_500)
        tracker.add_request("B", 1_200)
        assert tracker.greeting("A", 1, 3_000) == 2_000
        assert tracker.greeting("B", 1, 3_000) == 1_800
        assert tracker.greeting("A", 2, 3_100) == 1_600
        assert tracker.untimed == 0

    def test_requests_stored_before_the_start_shift_the_numbers(self) -> None:
        tracker = LatencyTracker()
        for _ in range(5):
            tracker.count_earlier("A")
        tracker.add_request("A", 10_000)  # A's 6th request
        assert tracker.greeting("A", 5, 10_500) is None  # answers a request from before the start
        assert tracker.greeting("A", 6, 12_000) == 2_000
        assert tracker.untimed == 1

    def test_a_greeting_whose_request_is_not_read_yet_is_untimed_and_does_not_shift_later_ones(self) -> None:
        tracker = LatencyTracker()
        tracker.add_request("A", 1_000)
        assert tracker.greeting("A", 2, 2_000) is None  # request 2 not read yet
        tracker.add_request("A", 1_100)
        tracker.add_request("A", 1_200)
        assert tracker.greeting("A", 3, 2_200) == 1_000  # request 1 and 2 are skipped over, 3 is matched
        assert tracker.untimed == 1

    def test_an_unknown_name_is_untimed(self) -> None:
        tracker = LatencyTracker()
        assert tracker.greeting("nobody", 1, 0) is None
        assert tracker.untimed == 1


def test_summary_percentiles() -> None:
    summary = summarize([float(n) for n in range(1, 101)])
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms) == (100, 51.0, 100.0, 100.0)
    assert summary.line() == "100 greetings: p50 0.05 s, p99 0.10 s, max 0.10 s"
    assert summarize([]).line() == "no greeting matched to a timed request yet"


def test_window_keeps_only_the_last_seconds() -> None:
    window = Window(10.0)
    window.add(0.0, 5_000.0)
    window.add(8.0, 1_000.0)
    assert window.summary(9.0).count == 2
    assert window.summary(12.0).max_ms == pytest.approx(1_000.0)
    assert window.summary(12.0).count == 1
