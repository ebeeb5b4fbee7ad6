"""The bench's comparison and report as pure functions on made-up figures: which way is
better, the ratio's orientation, p99 or max, the parameters line, the spread warning."""

from __future__ import annotations

import math

import pytest

from pulp_content.fixtures.bench import SCENARIOS, Outcome, Sample, scenario_entry
from pulp_content.fixtures.compare import (
    METRICS,
    TAIL_SAMPLES,
    better,
    median_of_runs,
    noisy,
    oriented_ratio,
    spread,
    tail,
)
from pulp_content.fixtures.report import cell, format_ratio, parameters, shown_metrics, table

ENVIRONMENT = {
    "database": "postgresql",
    "size": 256 * 1024,
    "requests": 20,
    "concurrency": 8,
    "repeat": 1,
    "commit": "0123456789",
}


def metrics(**given: float | None) -> dict[str, float | None]:
    figures: dict[str, float | None] = dict.fromkeys(METRICS, 1.0)
    figures.update(ttfb_ms_p99=None, total_ms_p99=None)
    figures.update(given)
    return figures


def outcome(samples: int = 20, **given: float | None) -> Outcome:
    return Outcome(metrics(**given), [Sample(0.001, 0.002, 10, 1, True)] * samples)


def test_rates_are_better_higher_and_everything_else_lower():
    assert better("mib_per_s") == better("requests_per_s") == "higher"
    assert {better(k) for k in METRICS} - {"higher"} == {"lower"}


@pytest.mark.parametrize(
    ("key", "merged", "redirect", "expected"),
    [
        ("client_requests_per_download", 1, 2, 2.0),  # half the requests: twice as good
        ("total_ms_p50", 8, 4, 0.5),  # twice as slow: half as good
        ("mib_per_s", 300, 100, 3.0),
        ("mib_per_s", 50, 100, 0.5),
        ("errors", 0, 0, 1.0),
        ("db_queries_per_download", 0, 5, math.inf),  # only merged reached zero
        ("db_queries_per_download", 5, 0, 0.0),
        ("ttfb_ms_p99", None, 3, None),
    ],
)
def test_the_ratio_is_above_one_where_merged_is_better(key, merged, redirect, expected):
    assert oriented_ratio(key, merged, redirect) == expected


def test_ratios_print_infinity_and_gaps():
    assert [format_ratio(v) for v in (2.0, math.inf, None)] == ["2.00", "∞", "-"]


def test_p99_needs_enough_samples():
    assert tail([1.0] * (TAIL_SAMPLES - 1)) is None
    values = [float(i) for i in range(1, 201)]
    assert tail(values) == 198.0


def test_with_too_few_samples_the_table_shows_the_max_and_says_so():
    entry = scenario_entry("streamed", {"merged": outcome(), "redirect": outcome()}, 1)
    labels = dict(shown_metrics(entry))
    assert "ttfb_ms_p99" not in labels and "total_ms_p99" not in labels
    assert labels["ttfb_ms_max"] == "ttfb_ms_max (n=20<100: no p99)"


def test_with_enough_samples_the_table_shows_p99_and_not_the_max():
    both = {d: outcome(120, ttfb_ms_p99=5.0, total_ms_p99=6.0) for d in ("merged", "redirect")}
    labels = dict(shown_metrics(scenario_entry("streamed", both, 1)))
    assert "ttfb_ms_p99" in labels and "ttfb_ms_max" not in labels


def test_parameters_name_database_size_n_concurrency_runs_and_commit():
    line = parameters(ENVIRONMENT)
    for part in ("postgresql", "256 KiB", "n=20", "concurrency 8", "1 run", "0123456789"):
        assert part in line
    assert "commit unknown" in parameters({**ENVIRONMENT, "commit": None})
    assert "3 runs" in parameters({**ENVIRONMENT, "repeat": 3})


def test_the_table_heads_with_the_parameters_and_the_ratios_orientation():
    entry = scenario_entry(
        "streamed",
        {
            "merged": outcome(client_requests_per_download=1.0),
            "redirect": outcome(client_requests_per_download=2.0),
        },
        1,
    )
    text = table({"environment": ENVIRONMENT, "scenarios": [entry]})
    lines = text.splitlines()
    assert "postgresql" in lines[0] and "ratio (>1: merged better)" in lines[1]
    row = next(line for line in lines if line.strip().startswith("client_requests"))
    assert row.split()[-1] == "2.00" and "lower" in row
    assert "--repeat" in text  # one run: says how to get a spread
    assert "!" not in text


def test_repeats_give_medians_and_spreads():
    runs = [metrics(total_ms_p50=v) for v in (10.0, 14.0, 11.0)]
    assert median_of_runs(runs)["total_ms_p50"] == 11.0
    assert spread(runs)["total_ms_p50"] == 4.0
    assert spread(runs)["ttfb_ms_p99"] is None


def test_a_spread_larger_than_the_difference_is_flagged():
    merged, redirect = metrics(total_ms_p50=10.0), metrics(total_ms_p50=11.0)
    spreads = {"merged": metrics(total_ms_p50=3.0), "redirect": metrics(total_ms_p50=0.5)}
    spreads = {
        d: {k: (v if k == "total_ms_p50" else 0.0) for k, v in s.items()}
        for d, s in spreads.items()
    }
    assert noisy(merged, redirect, spreads) == ["total_ms_p50"]
    spreads["merged"]["total_ms_p50"] = 0.9
    assert noisy(merged, redirect, spreads) == []


def test_the_table_warns_of_a_noisy_metric_over_repeats():
    def runs(*values: float) -> Outcome:
        return Outcome.of_runs([outcome(total_ms_p50=v) for v in values])

    entry = scenario_entry("streamed", {"merged": runs(5, 9), "redirect": runs(6, 6)}, 2)
    assert entry["noisy"] == ["total_ms_p50"]
    text = table({"environment": {**ENVIRONMENT, "repeat": 2}, "scenarios": [entry]})
    warning = [line for line in text.splitlines() if line.strip().startswith("!")]
    assert len(warning) == 1 and "total_ms_p50" in warning[0] and "4.00" in warning[0]


def test_the_chart_renders(tmp_path):
    pytest.importorskip("matplotlib")
    from pulp_content.fixtures.report import plot

    outcomes = {
        name: {
            "merged": Outcome(
                metrics(), [Sample(0.001, 0.001 * (i + 1), 1, 1, True) for i in range(30)]
            ),
            "redirect": Outcome(
                metrics(), [Sample(0.002, 0.003 * (i + 1), 1, 2, True) for i in range(30)]
            ),
        }
        for name in SCENARIOS
    }
    path = tmp_path / "bench.png"
    plot(outcomes, path, {"environment": ENVIRONMENT})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_a_small_figure_is_not_printed_as_zero():
    assert cell(0.001).strip() == "0.001"
    assert cell(0.0).strip() == "0.00"
    assert cell(None).strip() == "-"
    assert cell(12.345).strip() == "12.35"
