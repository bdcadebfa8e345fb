#!/usr/bin/env python3
"""Assemble docs/benchmarks.md and a PNG chart of the ratios from out/bench/*.{md,tsv}."""
import datetime
import glob
import os
import platform
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    kernel = platform.release()
    try:
        distro = subprocess.run(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        distro = ""
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, {distro}, kernel {kernel}"


def main(outdir, md_path, png_path):
    rows = []
    sections = []
    for tsv in sorted(glob.glob(os.path.join(outdir, "*.tsv"))):
        name = os.path.basename(tsv)[:-4]
        with open(tsv) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 6 or parts[0] == "figure":
                    continue
                try:
                    lo, med, hi = (float(x) for x in parts[2:5])
                except ValueError:
                    continue
                rows.append((name, parts[0], parts[1], lo, med, hi, parts[5]))
    for md in sorted(glob.glob(os.path.join(outdir, "*.md"))):
        with open(md) as f:
            sections.append(f.read().strip())

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Berth benchmarks",
        "",
        "Written by `make bench` (ci/bench/run.sh). Every figure is a ratio against a baseline measured",
        "in the same run (min / median / max over the runs); absolute times on these shared machines are",
        "noise, the ratios are the result.",
        "",
        f"Machine: {machine()}. Run: {now}.",
        "",
        "![ratios](benchmarks.png)",
        "",
        "## Summary",
        "",
        "| bench | figure | baseline | min | median | max | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig, base, lo, med, hi, goal in rows:
        lines.append(f"| {name} | {fig} | {base} | {lo:.3g} | {med:.3g} | {hi:.3g} | {goal} |")
    lines.append("")
    lines.extend(s + "\n" for s in sections)
    with open(md_path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")

    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
        labels = [f"{r[1]} / {r[2]}" for r in rows]
        meds = [r[4] for r in rows]
        errs = [[r[4] - r[3] for r in rows], [r[5] - r[4] for r in rows]]
        y = list(range(len(rows)))
        ax.barh(y, meds, xerr=errs, color="#4c72b0", capsize=3)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ratio Berth / baseline (median, min-max bars; log scale)")
        ax.set_title("Berth against its baselines")
        fig.tight_layout()
        fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
