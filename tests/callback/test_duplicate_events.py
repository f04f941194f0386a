"""SeqNums: duplicate/late detection matches a full record of every seq_num, in bounded memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atomscale_bluesky.callback.duplicate_events import SeqNums, Verdict


def _model(seqs: list[int]) -> list[Verdict]:
    """What a record of every seq_num ever seen says about each one."""
    seen: set[int] = set()
    out = []
    for seq in seqs:
        if seq in seen:
            out.append(Verdict.DUPLICATE)
        elif seen and seq < max(seen):
            out.append(Verdict.LATE)
        else:
            out.append(Verdict.NEW)
        seen.add(seq)
    return out


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=300))
def test_verdicts_match_a_full_record_within_the_window(seqs: list[int]) -> None:
    tracker = SeqNums(window=1000)
    assert [tracker.see(s) for s in seqs] == _model(seqs)


def test_in_order_streams_cost_no_memory_per_event() -> None:
    tracker = SeqNums()
    verdicts = {tracker.see(s) for s in range(1, 200_001)}
    assert verdicts == {Verdict.NEW}
    assert tracker.high == 200_000 and tracker.skipped == set()
    assert tracker.see(199_999) is Verdict.DUPLICATE


def test_skipped_numbers_are_remembered_then_forgotten_beyond_the_window() -> None:
    tracker = SeqNums(window=10)
    assert tracker.see(1) is Verdict.NEW
    assert tracker.see(5) is Verdict.NEW  # 2, 3, 4 may still arrive
    assert tracker.see(3) is Verdict.LATE
    assert tracker.see(3) is Verdict.DUPLICATE
    for seq in range(7, 100, 2):  # every other number skipped: 46 of them, more than 2 windows
        tracker.see(seq)
    assert len(tracker.skipped) <= 2 * tracker.window
    assert tracker.see(96) is Verdict.LATE  # within the window: still waited for
    assert tracker.see(2) is Verdict.DUPLICATE  # far behind: forgotten, counted as seen
    tracker.see(1_000_000)  # a jump remembers at most a window of skipped numbers
    assert len(tracker.skipped) <= 3 * tracker.window
    assert tracker.see(999_995) is Verdict.LATE
