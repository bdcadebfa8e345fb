#!/usr/bin/env python3
"""Assemble docs/benchmarks.md and a PNG chart of the ratios from out/bench/*.{md,tsv}.

usage: assemble.py OUT_DIR MD_PATH PNG_PATH

Each out/bench/<name>.tsv row: figure, baseline, ratio_min, ratio_median, ratio_max, goal.
A goal is "< x", "<= x", "> x", ">= x", "x" (equal, within 0.1 %) or "" (shown, no goal).
A bench that failed leaves out/bench/<name>.failed (run.sh); it is listed, its old results are not
used. A bench with nothing in OUT_DIR (not run since out/ was cleaned, or on another machine) keeps
its section and summary rows from the document MD_PATH already holds: each section there starts
with a `<!-- bench: NAME -->` line. The PNG is skipped (with a note) when matplotlib is missing.
"""
import datetime
import glob
import os
import platform
import re
import subprocess
import sys

ORDER = ["nat", "conntrack", "stages", "memory", "metrics", "images", "boot", "disk", "fetch", "density", "demo"]


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def machine():
    cpu, mhz = "unknown CPU", ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name") and cpu == "unknown CPU":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("cpu MHz") and not mhz:
            mhz = f" @ {float(line.split(':', 1)[1]):.0f} MHz"
    where = []
    if re.search(r"^flags\s*:.*\bhypervisor\b", read("/proc/cpuinfo"), re.M):
        where.append("a virtual machine")
    try:
        ct = subprocess.run(["systemd-detect-virt", "--container"], capture_output=True, text=True).stdout.strip()
        if ct and ct != "none":
            where.append(f"a {ct} container")
    except OSError:
        pass
    mem = ""
    m = re.search(r"MemTotal:\s+(\d+)", read("/proc/meminfo"))
    if m:
        mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB RAM"
    distro = ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)', read("/etc/os-release"), re.M)
    if m:
        distro = m.group(1)
    load = read("/proc/loadavg").split()[:3]
    return {
        "CPU": f"{cpu}{mhz}" + (f" (in {', '.join(where)})" if where else ""),
        "cores": str(os.cpu_count()),
        "memory": mem,
        "OS": distro,
        "kernel": platform.release(),
        "load average when assembled": " ".join(load),
    }


def parse_goal(goal):
    g = goal.strip().replace("≤", "<=").replace("≥", ">=")
    m = re.fullmatch(r"(<=|>=|<|>|=)?\s*(-?[0-9.]+)", g)
    if not m:
        return None
    return (m.group(1) or "="), float(m.group(2))


def meets(goal, v):
    op, x = goal
    return {
        "<": v < x,
        "<=": v <= x,
        ">": v > x,
        ">=": v >= x,
        "=": abs(v - x) <= 1e-3 * abs(x) + 1e-12,
    }[op]


def verdict(goal_text, lo, med, hi):
    goal = parse_goal(goal_text)
    if goal is None:
        return "", None
    if all(meets(goal, v) for v in (lo, med, hi)):
        return "**met**", True
    if meets(goal, med):
        return "met by the median, not by every run", True
    return "**not met**", False


def bench_names(outdir):
    names = {os.path.basename(p).rsplit(".", 1)[0] for p in glob.glob(os.path.join(outdir, "*.tsv"))}
    names |= {os.path.basename(p).rsplit(".", 1)[0] for p in glob.glob(os.path.join(outdir, "*.md"))}
    names |= {os.path.basename(p).rsplit(".", 1)[0] for p in glob.glob(os.path.join(outdir, "*.failed"))}
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


MARKER = re.compile(r"^<!-- bench: (\S+) -->$", re.M)


def previous(md_text):
    """The sections and summary rows of an earlier document, by bench name."""
    sections, rows = {}, {}
    marks = list(MARKER.finditer(md_text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(md_text)
        sections[m.group(1)] = md_text[m.end():end].strip()
    for line in md_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or cells[0] not in sections:
            continue
        try:
            lo, med, hi = (float(x) for x in cells[3:6])
        except ValueError:
            continue
        goal = "" if cells[6] == "—" else cells[6]
        _, ok = verdict(goal, lo, med, hi)
        rows.setdefault(cells[0], []).append(dict(bench=cells[0], fig=cells[1], base=cells[2], lo=lo, med=med, hi=hi,
                                                  raw=cells[3:6], goal=goal, verdict=cells[7], ok=ok))
    return sections, rows


def main(outdir, md_path, png_path):
    rows, sections, failed, stamps = [], [], [], {}
    old_sections, old_rows = previous(read(md_path))
    present = set(bench_names(outdir))
    names = sorted(present | set(old_sections), key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        if name not in present:
            rows.extend(old_rows.get(name, []))
            sections.append(f"<!-- bench: {name} -->\n" + old_sections[name])
            continue
        if os.path.exists(os.path.join(outdir, name + ".failed")):
            failed.append((name, read(os.path.join(outdir, name + ".failed")).strip()))
            continue
        tsv = os.path.join(outdir, name + ".tsv")
        if os.path.exists(tsv):
            stamps[name] = datetime.datetime.fromtimestamp(os.path.getmtime(tsv), datetime.timezone.utc)
        for line in read(tsv).splitlines():
            parts = line.split("\t")
            if len(parts) < 6 or parts[0] == "figure":
                continue
            try:
                lo, med, hi = (float(x) for x in parts[2:5])
            except ValueError:
                continue
            text, ok = verdict(parts[5], lo, med, hi)
            rows.append(dict(bench=name, fig=parts[0], base=parts[1], lo=lo, med=med, hi=hi, raw=parts[2:5],
                             goal=parts[5].strip(), verdict=text, ok=ok))
        md = read(os.path.join(outdir, name + ".md")).strip()
        if md:
            when = stamps.get(name)
            if when:
                md += f"\n\n<sub>Measured {when.strftime('%Y-%m-%d %H:%M UTC')}.</sub>"
            sections.append(f"<!-- bench: {name} -->\n" + md)

    now = datetime.datetime.now(datetime.timezone.utc)
    mach = machine()
    lines = [
        "# Berth benchmarks",
        "",
        "Written by `make bench` (ci/bench/run.sh runs every ci/bench/<name>.sh, then ci/bench/assemble.py);",
        "`ci/bench/run.sh nat stages` runs some. Do not edit by hand.",
        "",
        "Every figure is a **ratio against a baseline measured in the same run** (or, where no other",
        "implementation exists to race, against the goal itself: the baseline column says which), with",
        "min / median / max over the runs. Absolute times on these shared machines (several agents on",
        "two cores) are noise; the ratios, measured back to back and alternating, are the result.",
        "A goal counts as met when the median meets it; the column says whether every run did.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in mach.items()]
    lines += [f"| assembled | {now.strftime('%Y-%m-%d %H:%M UTC')} |", ""]
    if rows:
        lines += ["![ratios against their baselines](benchmarks.png)", ""]
    lines += [
        "## Summary",
        "",
        "| bench | figure | baseline | min | median | max | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['fig']} | {r['base']} | {r['raw'][0]} | {r['raw'][1]} | "
                     f"{r['raw'][2]} | {r['goal'] or '—'} | {r['verdict'] or 'shown, no goal'} |")
    met = sum(1 for r in rows if r["ok"] is True)
    goals = sum(1 for r in rows if r["ok"] is not None)
    lines += ["", f"Goals met: {met} of {goals}."]
    if failed:
        lines += ["", "**Benches that failed or timed out in their last run** (no figures):", ""]
        lines += [f"- {n}: {why or 'see the run log'}" for n, why in failed]
    lines.append("")
    lines.extend(s + "\n" for s in sections)
    tmp = md_path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    os.replace(tmp, md_path)

    if rows:
        chart(rows, png_path, now)


def chart(rows, png_path, now):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("assemble: matplotlib missing (python3-matplotlib): no PNG written", file=sys.stderr)
        return
    n = len(rows)
    fig, ax = plt.subplots(figsize=(10, 0.42 * n + 1.6))
    cap = 3.0
    left = min(0.0, min(r["lo"] for r in rows))
    y = list(range(n))
    colors = {True: "#4c9a5b", False: "#c0504d", None: "#9a9a9a"}
    for i, r in enumerate(rows):
        med = min(r["med"], cap)
        ax.barh(i, med, color=colors[r["ok"]], height=0.6)
        lo, hi = min(r["lo"], cap), min(r["hi"], cap)
        ax.plot([lo, hi], [i, i], color="black", linewidth=1)
        ax.plot([lo, lo], [i - 0.15, i + 0.15], color="black", linewidth=1)
        ax.plot([hi, hi], [i - 0.15, i + 0.15], color="black", linewidth=1)
        g = parse_goal(r["goal"])
        if g:
            ax.plot([g[1], g[1]], [i - 0.4, i + 0.4], color="#1f3b73", linewidth=2.2)
        label = f"{r['med']:.3g}" + (" (off scale)" if r["med"] > cap else "")
        ax.text(min(max(r["hi"], r["med"]), cap) + 0.03, i, label, va="center", fontsize=7)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['bench']}: {r['fig']}"[:80] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(left, cap + 0.4)
    ax.set_xlabel("ratio to the baseline: bar = median, whisker = min–max, blue tick = goal\n"
                  "green: goal met, red: not met, grey: no goal", fontsize=8)
    ax.set_title(f"Berth against its baselines ({now.strftime('%Y-%m-%d')})", fontsize=10)
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png_path)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
