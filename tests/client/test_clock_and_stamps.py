"""Clock filter maths (§2.6) and chunk stamps (§4), without a network."""

from __future__ import annotations

import pytest

from atomscale_bluesky.client.api import rotational_period, rust_float_text
from atomscale_bluesky.client.client import default_stream_name
from atomscale_bluesky.client.clock import (
    ClockSample,
    ClockState,
    LabClock,
    round_half_away,
    sample_from_exchange,
)
from atomscale_bluesky.client.stamps import chunk_stamps, span_ms


def test_round_half_away_from_zero() -> None:
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4, -2.6)] == [
        1,
        2,
        3,
        -1,
        -3,
        2,
        -3,
    ]


def test_exchange_offset_and_delay() -> None:
    s = sample_from_exchange(1000.0, 1010.0, 6004.0, 6006.0)
    assert s == ClockSample(offset_ms=5000.0, delay_ms=8.0, measured_at_ms=6006.0)
    assert sample_from_exchange(1000.0, 990.0, 5000.0, 5001.0) is None  # host stepped back
    assert sample_from_exchange(1000.0, 1010.0, 5002.0, 5001.0) is None  # server held < 0


def test_filter_steps_during_burst_then_slews() -> None:
    st = ClockState()
    for i in range(4):
        st.record(ClockSample(100.0 + i, 10.0, 0.0), now_ms=1000.0 * i)
    assert st.current(3000.0) == pytest.approx(103.0)
    # fifth sample with lower delay and +10 ms: slews at 0.5 ms/s, not a step
    st.record(ClockSample(113.0, 5.0, 0.0), now_ms=3000.0)
    assert st.current(3000.0) == pytest.approx(103.0)
    assert st.current(5000.0) == pytest.approx(104.0)  # 2 s -> 1 ms
    assert st.current(100_000.0) == pytest.approx(113.0)  # never overshoots


def test_filter_clears_history_on_host_jump_and_steps() -> None:
    st = ClockState()
    for i in range(6):
        st.record(ClockSample(0.0, 10.0, 0.0), now_ms=float(i))
    st.record(ClockSample(5000.0, 20.0, 0.0), now_ms=10.0)
    assert st.samples == [ClockSample(5000.0, 20.0, 0.0)]
    assert st.current(10.0) == 5000.0


def test_best_is_lowest_delay_ties_to_newer() -> None:
    st = ClockState()
    st.record(ClockSample(1.0, 5.0, 1.0), 0.0)
    st.record(ClockSample(2.0, 5.0, 2.0), 0.0)
    st.record(ClockSample(3.0, 9.0, 3.0), 0.0)
    assert st.best == ClockSample(2.0, 5.0, 2.0)


def test_correct_ms_rounds_offset_and_uncertainty() -> None:
    clock = LabClock("http://127.0.0.1:9")
    clock._state.record(ClockSample(-6999.4, 1.46, 0.0), 0.0)
    stamp, corr = clock.correct_ms(1_700_000_000_000)
    assert corr is not None and corr.offset_ms == -6999 and corr.uncertainty_ms == 0.7
    assert stamp == 1_699_999_993_001
    unmeasured = LabClock("http://127.0.0.1:9")
    assert unmeasured.correct_ms(5) == (5, None)
    assert unmeasured.status() is None


def test_span_truncates() -> None:
    assert span_ms(7, 3.0) == 2333
    assert span_ms(60, 29.97) == 2002
    assert span_ms(20, 10.0) == 2000
    assert span_ms(240, 120.0) == 2000


def test_chunk_stamps_rule() -> None:
    assert chunk_stamps(7, 3.0, 10_000, None, None) == (10_000 - 2333, 10_000, None)
    assert chunk_stamps(7, 3.0, 10_000, 1_000, None) == (1_000, 3_333, None)
    clock = LabClock("http://127.0.0.1:9")
    clock._state.record(ClockSample(2.5, 1.0, 0.0), 0.0)
    start, end, corr = chunk_stamps(20, 10.0, 10_000, 1_000, clock)
    assert (start, end) == (1_003, 3_003) and corr is not None and corr.offset_ms == 3


def test_presign_float_text_and_rotational_period() -> None:
    assert rust_float_text(10.0) == "10.0"
    assert rust_float_text(29.97) == "29.97"
    assert rust_float_text(1e-7) == "1e-7"
    assert rust_float_text(1e16) == "1e16"
    assert rust_float_text(1.5e-7) == "1.5e-7"
    assert rotational_period(10.0, 0.0) is None
    assert rotational_period(10.0, 12.5) == 48.0


def test_default_stream_name_format() -> None:
    import datetime

    assert default_stream_name(datetime.datetime(2024, 1, 1, 9, 31)) == "RHEED Stream @ 9:31AM"
    assert default_stream_name(datetime.datetime(2024, 1, 1, 0, 5)) == "RHEED Stream @ 12:05AM"
    assert default_stream_name(datetime.datetime(2024, 1, 1, 13, 0)) == "RHEED Stream @ 1:00PM"
    assert default_stream_name(datetime.datetime(2024, 1, 1, 12, 59)) == "RHEED Stream @ 12:59PM"
