"""The late trend of a baseline curve (figure3.late_trend) and scripts/dev/plateau_trend.py on known curves."""

import csv
import math
import subprocess
import sys

import pytest

from bn_inception import figure3
from tests.test_train import REPO


def known_curve(scatter: float) -> list[tuple[int, float]]:
    """Steps 5..100; top-1 (%) = 50 + s / 10 on the last 20% (steps 85-100: 1 point per tenth of the run)
    plus +d, -d, -d, +d, a pattern orthogonal to a constant and to the step, so the least-squares line is
    exactly the straight one and its residuals exactly the pattern. Earlier steps, step 80 included (the
    last step of the first 80%), are far off the line and must not count."""
    curve = [(s, 0.9 if s % 10 else 0.1) for s in range(5, 85, 5)]
    curve += [(s, (50 + s / 10 + d) / 100) for s, d in zip((85, 90, 95, 100), (scatter, -scatter, -scatter, scatter))]
    return curve


def test_late_trend_is_the_least_squares_line_through_the_last_fifth():
    slope, error, scatter = figure3.late_trend(known_curve(0.3))
    # x = 10 * step / 100 = 8.5, 9, 9.5, 10: sum of squared deviations 1.25; residuals +-0.3 on 2 degrees of freedom.
    assert slope == pytest.approx(1.0, abs=1e-9)
    assert scatter == pytest.approx(math.sqrt(4 * 0.3 ** 2 / 2), abs=1e-9)
    assert error == pytest.approx(math.sqrt(4 * 0.3 ** 2 / 2) / math.sqrt(1.25), abs=1e-9)
    assert figure3.late_trend(known_curve(0.0)) == pytest.approx((1.0, 0.0, 0.0), abs=1e-9)


def test_late_trend_needs_three_late_evaluations():
    assert all(math.isnan(v) for v in figure3.late_trend([(50, 0.2), (80, 0.5), (90, 0.6), (100, 0.7)]))


def write_curves(path, curves):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "seed", "step", "paper_step", "top1", "top5", "top1_moving_average"])
        for (run, seed), curve in curves.items():
            for step, top1 in curve:
                writer.writerow([run, seed, step, 2 * step, f"{top1:.6f}", "", ""])


def run(*args):
    return subprocess.run([sys.executable, "scripts/dev/plateau_trend.py", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def test_the_script_reports_every_seed_and_the_rule_per_file(tmp_path):
    flat = [(s, 0.60 + (0.004 if s == 100 else 0.0)) for s in range(10, 110, 10)]  # gains 0.4 points, slope 0.2
    write_curves(tmp_path / "r1.csv", {("inception", 0): known_curve(0.3), ("inception", 1): flat,
                                       ("bn_x30", 0): [(10, 0.1), (20, 0.2)]})
    result = run(tmp_path / "r1.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Seed 0: maximum 0.9 at step 5 (earliest of the ties), nothing above it later: gain 0.
    assert f"| r1.csv | 0 | 100 | 90.0% (5) | 0.00 | +1.00 ({math.sqrt(0.18 / 1.25):.2f}) | {math.sqrt(0.18):.2f} |" in lines
    # Seed 1: late evaluations 90, 100 only (step 80 belongs to the first 80%): too few for a line.
    assert "| r1.csv | 1 | 100 | 60.4% (100) | 0.40 | n/a | n/a |" in lines
    assert lines[-1] == ("r1.csv: 2 seeds, mean late slope n/a (fewer than 3 late evaluations); Inception gained 0.20 "
                         "points in the last 20% of its steps (mean over seeds; per seed 0.00, 0.40): the rule (< 0.5) "
                         "is met")
    assert not any(line.startswith("| r1.csv") and "bn_x30" in line for line in lines)
    (tmp_path / "fig3_r9").mkdir()  # a report folder's curves.csv is named with its folder
    write_curves(tmp_path / "fig3_r9" / "curves.csv", {("inception", 0): flat})
    assert run(tmp_path / "fig3_r9" / "curves.csv").stdout.splitlines()[-1].startswith("fig3_r9/curves.csv: 1 seed, ")


def test_the_script_names_a_bad_file_in_one_line(tmp_path):
    write_curves(tmp_path / "others.csv", {("bn_x30", 0): [(10, 0.1)]})
    (tmp_path / "runs.csv").write_text("run,seed,steps_to_threshold\ninception,0,100\n")
    for path, message in ((tmp_path / "others.csv", "no run labelled 'inception' (labels in it: bn_x30)"),
                          (tmp_path / "runs.csv", "no column step, top1 (expected a curves.csv"),
                          (tmp_path / "absent.csv", "curves files not found")):
        result = run(path)
        assert result.returncode == 2
        assert message in result.stderr.splitlines()[-1]
        assert result.stdout == ""


def test_the_rule_sentence_names_the_label():
    assert figure3.plateau_sentence([0.1, 0.3]).startswith("Inception gained 0.20 points")
    assert figure3.plateau_sentence([0.1, 0.3], "bn_x30").startswith("bn_x30 gained 0.20 points")


def test_mean_band_is_the_mean_min_and_max_over_the_curves_evaluated_at_each_step():
    steps, mean, low, high = figure3.mean_band([[(10, 0.2), (20, 0.4)], [(10, 0.6), (30, 0.5)], [(20, 0.1)]])
    assert steps == [10, 20, 30]
    assert mean == pytest.approx([0.4, 0.25, 0.5]) and low == [0.2, 0.1, 0.5] and high == [0.6, 0.4, 0.5]
    assert figure3.mean_band([]) == ([], [], [], [])


def test_the_plot_draws_each_files_curve_late_gains_and_slopes(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "scripts" / "dev"))
    import plateau_trend
    from matplotlib.figure import Figure

    flat = [(s, 0.60 + (0.004 if s == 100 else 0.0)) for s in range(10, 110, 10)]  # gain 0.4, slope 0.2
    # B = 200: gain 1.0; late evaluations (x = 10 * step / 200) 8.5, 9, 9.5, 10 at 70, 70, 70, 71%: slope 0.75 / 1.25.
    longer = [(s, 0.7 + (0.01 if s == 200 else 0.0)) for s in range(10, 210, 10)]
    write_curves(tmp_path / "r1.csv", {("inception", 0): known_curve(0.3), ("inception", 1): flat})
    write_curves(tmp_path / "r2.csv", {("inception", 0): longer})
    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, path, **kwargs: drawn.append((figure, path)))
    files = {path: plateau_trend.read_curves(path, "inception") for path in (tmp_path / "r1.csv", tmp_path / "r2.csv")}
    plateau_trend.plot(files, "inception", tmp_path / "p.png")
    (figure, path), = drawn
    curves_ax, gain_ax, slope_ax = figure.axes
    assert path == tmp_path / "p.png"
    # Panel 1: each file's mean curve in percent, at 80% of its B a dotted line; r1's B is 100, r2's 200.
    mean_r1, _, mean_r2, _ = curves_ax.get_lines()
    assert list(mean_r1.get_xdata()[:2]) == [5, 10] and mean_r1.get_ydata()[1] == pytest.approx(100 * (0.1 + 0.6) / 2)
    assert mean_r2.get_ydata()[-1] == pytest.approx(71.0) and mean_r2.get_label() == "B = 200 (1 seed)"
    assert [line.get_xdata()[0] for line in curves_ax.get_lines()[1::2]] == [80, 160]
    # Panel 2: per-seed gains at each B, then the means (0.2 over r1's seeds 0.0 and 0.4; 1.0) and the rule.
    seeds_r1, seeds_r2, means, rule = gain_ax.get_lines()
    assert list(seeds_r1.get_ydata()) == pytest.approx([0.0, 0.4]) and list(seeds_r2.get_xdata()) == [200]
    assert list(means.get_xdata()) == [100, 200] and list(means.get_ydata()) == pytest.approx([0.2, 1.0])
    assert rule.get_ydata()[0] == figure3.PLATEAU_POINTS
    # Panel 3: the mean slopes; r1's seed 1 has too few late evaluations for a line, so r1's mean is n/a.
    means, = [line for line in slope_ax.get_lines() if line.get_label() == "mean over seeds"]
    assert math.isnan(means.get_ydata()[0]) and means.get_ydata()[1] == pytest.approx(0.6)


def test_a_bad_plot_path_is_refused_before_the_report(tmp_path):
    write_curves(tmp_path / "r1.csv", {("inception", 0): known_curve(0.0)})
    for bad in (tmp_path / "p.jpg", tmp_path / "absent" / "p.png"):
        result = run(tmp_path / "r1.csv", f"--plot={bad}")
        assert result.returncode == 2 and result.stdout == ""
        assert f"--plot={bad}: expected a .png file in an existing folder" in result.stderr.splitlines()[-1]
    result = run(tmp_path / "r1.csv", f"--plot={tmp_path / 'p.png'}")
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == f"Figure: {tmp_path / 'p.png'}"
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plateau_sentence_of_a_seed_with_one_evaluation_says_so_instead_of_nan():
    one = [(100, 0.5)]  # no evaluation before the last 20%: its gain cannot be computed
    assert math.isnan(figure3.plateau_gain(one))
    assert figure3.plateau_sentence([figure3.plateau_gain(one)]) == (
        "Inception's gain in the last 20% of its steps cannot be computed: no seed was evaluated before them (1 seed)")
    two = [figure3.plateau_gain(one), 0.3]
    assert figure3.plateau_sentence(two) == ("Inception gained 0.30 points in the last 20% of its steps (mean over "
                                             "seeds; per seed n/a, 0.30): the rule (< 0.5) is met")
    assert "nan" not in figure3.plateau_sentence(two) and not figure3.plateau_met([math.nan])
