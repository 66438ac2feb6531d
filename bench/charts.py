"""The benchmarks' charts, as SVG, from the JSON the benchmarks write.

usage: charts.py soak RESULTS.json [OUTDIR]     size and run time per night (bench/soak.py)
       charts.py steady RESULTS.json [OUTDIR]   run time against table size (bench/steady_state.py)

OUTDIR is doc/img by default. make bench-soak and make bench-10m run it on
the file they wrote; bench/requirements.txt pins matplotlib, which the bench
targets install into .venv. The SVGs are small and reproducible: text stays
text (no embedded glyphs), element ids come from a fixed salt, and no date
is written, so the same JSON always gives the same bytes.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MB = 1048576
CLEANED, BASELINE = "cleaned", "baseline"
OURS_COLOR, BASELINE_COLOR, AUTHFORT_COLOR = "#1f77b4", "#d62728", "#7f7f7f"

matplotlib.rcParams.update({
    "svg.fonttype": "none",
    "svg.hashsalt": "authfort_cleanup",
    "font.size": 9,
    # One short family list in every <text> element; viewers fall back to their sans-serif.
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "path.simplify": True,
})


def save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def soak(data: dict, outdir: Path) -> None:
    nights = data["nights"]
    x = [n["night"] for n in nights]

    def series(schema: str, key: str, scale: float = 1.0) -> list[float]:
        return [n["tables"][schema][key] / scale for n in nights]

    subtitle = (f"PostgreSQL {data['postgres']}, {len(nights)} nights of {data['night_seconds']:g} s,"
                f" {data['live']:,} live sessions, autovacuum at its defaults")

    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    axes.plot(x, series(CLEANED, "total_bytes", MB), color=OURS_COLOR, label="CALL authfort_cleanup_run(): total")
    axes.plot(x, series(BASELINE, "total_bytes", MB), color=BASELINE_COLOR, label="raw DELETE: total")
    axes.plot(x, series(CLEANED, "heap_bytes", MB), color=OURS_COLOR, linestyle="--", label="CALL authfort_cleanup_run(): heap")
    axes.plot(x, series(BASELINE, "heap_bytes", MB), color=BASELINE_COLOR, linestyle="--", label="raw DELETE: heap")
    # A tick along the bottom for each night in which autovacuum finished a
    # vacuum of the table: the baseline's row just above ours.
    for row, (schema, color) in enumerate(((CLEANED, OURS_COLOR), (BASELINE, BASELINE_COLOR))):
        counts = [0] + series(schema, "autovacuum_count")
        nights_vacuumed = [night for night, before, after in zip(x, counts, counts[1:]) if after > before]
        axes.plot(nights_vacuumed, [0.02 + 0.03 * row] * len(nights_vacuumed), linestyle="none", marker="|",
                  markersize=7, color=color, transform=axes.get_xaxis_transform(),
                  label="autovacuum finished" if row == 0 else None)
    title = "Sessions table size after each night's cleanup (total: pg_total_relation_size)"
    results = data.get("results") or {}
    if CLEANED in results:
        late, before = results[CLEANED]["size_nights_late"], results[CLEANED]["size_nights_before"]
        axes.axvspan(before[0] - 0.5, before[1] + 0.5, color="#f2f2f2", zorder=0)
        axes.axvspan(late[0] - 0.5, late[1] + 0.5, color="#e6e6e6", zorder=0)
        title += (f"\nshaded: nights {late[0]}-{late[1]} against {before[0]}-{before[1]},"
                  f" ours {results[CLEANED]['size_ratio']:.2f}x, the raw DELETE's {results[BASELINE]['size_ratio']:.2f}x")
    axes.set_title(f"{title}\n{subtitle}", fontsize=9)
    axes.set_xlabel("night")
    axes.set_ylabel("MB")
    axes.set_ylim(bottom=0)
    axes.set_xlim(0.5, x[-1] + 0.5)
    # Below the plot: inside, it would hide the heap's lines.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3, fontsize=8)
    save(figure, outdir / "soak-size.svg")

    # Results that count blocks (bench/soak.py since it does) get a third
    # panel: the work per deleted session, which the machine's load does not
    # change, under the time, which it does.
    counted = all("buffers" in n["tables"][CLEANED] for n in nights)
    figure, panels = plt.subplots(3 if counted else 2, 1, figsize=(7.5, 6.6 if counted else 4.8), sharex=True)
    top = panels[0]
    top.plot(x, series(CLEANED, "seconds"), color=OURS_COLOR, marker=".", label="CALL authfort_cleanup_run()")
    top.plot(x, series(BASELINE, "seconds"), color=BASELINE_COLOR, marker=".", label="raw DELETE")
    top.set_ylabel("run time, s")
    what = "its time, its time and its blocks per deleted session" if counted else "its time, and its time per deleted session"
    top.set_title(f"Each night's cleanup: {what}\n{subtitle}", fontsize=9)
    top.legend(loc="lower right", fontsize=8)
    per_row = [("seconds", 1e6, "µs per deleted session")] + ([("buffers", 1, "blocks read or hit\nper deleted session")]
                                                             if counted else [])
    for axes, (key, scale, label) in zip(panels[1:], per_row):
        for schema, color in ((CLEANED, OURS_COLOR), (BASELINE, BASELINE_COLOR)):
            values = [n["tables"][schema][key] / n["tables"][schema]["sessions_deleted"] * scale
                      if n["tables"][schema]["sessions_deleted"] else float("nan") for n in nights]
            axes.plot(x, values, color=color, marker=".")
        axes.set_ylabel(label)
    for axes in panels:
        axes.set_ylim(bottom=0)
    panels[-1].set_xlabel("night")
    panels[-1].set_xlim(0.5, x[-1] + 0.5)
    save(figure, outdir / "soak-time.svg")


# The steady state's variants, in the order the legend lists them.
STEADY_LINES = [
    ("AuthFort cleanup_expired_sessions(), no time indexes",
     "AuthFort's cleanup_expired_sessions(), replaced_by index only", AUTHFORT_COLOR, ":"),
    ("AuthFort cleanup_expired_sessions()", "AuthFort's cleanup_expired_sessions(), with the time indexes",
     AUTHFORT_COLOR, "--"),
    ("raw DELETE, time indexes (baseline)", "raw DELETE, with the time indexes", BASELINE_COLOR, "-"),
    ("CALL authfort_cleanup_run()", "CALL authfort_cleanup_run(), with the time indexes", OURS_COLOR, "-"),
]


def steady(data: dict, outdir: Path) -> None:
    """Time against table size, for the tables with the same 100,000
    deletable rows (ordered layout): a run that costs what it deletes is flat."""
    tables = sorted((t for t in data["tables"] if t["layout"] == "ordered" and t["deletable"] == 100_000),
                    key=lambda t: t["n"])
    if len(tables) < 2:
        sys.exit("charts.py steady: needs the 100,000-deletable tables at two sizes at least (make bench-10m)")
    sizes = [t["n"] for t in tables]
    figure, axes = plt.subplots(figsize=(7.5, 3.8))
    for key, label, color, style in STEADY_LINES:
        points = [(t["n"], t["variants"][key]) for t in tables
                  if key in t["variants"] and t["variants"][key]["status"] == "ok"]
        if not points:
            continue
        xs = [n for n, _ in points]
        ys = [v["seconds"] for _, v in points]
        errors = [[v["seconds"] - v["min"] for _, v in points], [v["max"] - v["seconds"] for _, v in points]]
        axes.errorbar(xs, ys, yerr=errors, color=color, linestyle=style, marker="o", markersize=4, capsize=3,
                      label=label)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(sizes))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda n, _: f"{n / 1e6:g}M rows"))
    axes.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
    axes.set_ylim(bottom=0)
    axes.set_ylabel("seconds (bars: fastest..slowest)")
    axes.set_title(f"Deleting the same 100,000 expired or revoked sessions from tables of growing size\n"
                   f"PostgreSQL {data['postgres']}, replaced_by index on every table, oldest rows deletable\n"
                   f"median of {data['repeat']} runs up to 2M rows, of {data['repeat_large']} above",
                   fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    save(figure, outdir / "steady-state.svg")


def main(arguments: list[str]) -> None:
    if len(arguments) not in (2, 3) or arguments[0] not in ("soak", "steady"):
        sys.exit(__doc__)
    data = json.loads(Path(arguments[1]).read_text())
    outdir = Path(arguments[2]) if len(arguments) == 3 else REPO / "doc" / "img"
    outdir.mkdir(parents=True, exist_ok=True)
    (soak if arguments[0] == "soak" else steady)(data, outdir.resolve())


if __name__ == "__main__":
    main(sys.argv[1:])
