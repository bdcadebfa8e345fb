#!/usr/bin/env python3
"""Write the boot bench's section and figures (ci/bench/boot.sh) from its raw figures.

usage: boot_report.py RAW_TSV GUEST_DIR MD_OUT TSV_OUT MACHINE_LINE

RAW_TSV: run, side (plain|berth), boot_to_ssh_s, qemu_cpu_s, stages_to_qemu_ms, rss_vmm_kib,
rss_dnsmasq_kib (the last three for berth only). GUEST_DIR: <side>-<run>.txt, each the output of
ci/testguest/guest-report.sh in that boot's guest. Ratios are per pair (run), then min/median/max.
"""
import csv
import os
import re
import statistics
import sys

UNIT = {"min": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}


def duration(text):
    """Seconds of a systemd duration: '1min 3.832s', '602ms', '8.150s'."""
    total, found = 0.0, False
    for num, unit in re.findall(r"([\d.]+)(min|ms|us|s)\b", text):
        total += float(num) * UNIT[unit]
        found = True
    return total if found else None


def sections(text):
    out, name = {}, None
    for line in text.splitlines():
        m = re.match(r"^## (\S+)", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name:
            out[name].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def chain(text, unit):
    """(@start, +took) of a unit in systemd-analyze critical-chain, in seconds (None if absent)."""
    m = re.search(re.escape(unit) + r" @(\S+)(?: \+(\S+))?", text)
    if not m:
        return None, None
    return duration(m.group(1)), duration(m.group(2)) if m.group(2) else 0.0


def phases(text):
    """The guest's phases of one boot, seconds by name (missing ones absent)."""
    s, p = sections(text), {}
    m = re.search(r"Startup finished in (.*?) \(kernel\) \+ (.*?) \(userspace\)", s.get("systemd-analyze", ""))
    if m:
        p["kernel"] = duration(m.group(1))
        p["userspace, all units"] = duration(m.group(2))
    m = re.search(r"graphical.target reached after (\S+(?: \S+s)?) in userspace", s.get("systemd-analyze", ""))
    if m:
        p["userspace to graphical.target"] = duration(m.group(1))
    if "kernel" in p and "userspace to graphical.target" in p:
        p["kernel start to graphical.target"] = p["kernel"] + p["userspace to graphical.target"]
    cc = s.get("critical-chain", "")
    for unit, name in [("cloud-init-local.service", "cloud-init-local.service"),
                       ("networking.service", "networking.service (ifup, DHCP)"),
                       ("cloud-init.service", "cloud-init.service")]:
        at, took = chain(cc, unit)
        if took is not None:
            p[name] = took
    # ssh.service is on the critical chain to graphical.target only in some boots: its own chain.
    at, took = chain(s.get("ssh-chain", ""), "ssh.service")
    if at is not None and "kernel" in p:
        p["kernel start to sshd started"] = p["kernel"] + at + took
    blame = s.get("blame", "")
    for unit in ["cloud-config.service", "cloud-final.service", "systemd-udev-trigger.service", "dev-vda1.device"]:
        m = re.search(r"^\s*(.+?) " + re.escape(unit) + r"$", blame, re.M)
        if m:
            p[unit] = duration(m.group(1))
    ci = s.get("cloud-init", "")
    m = re.search(r"found local data from (DataSource\w+) @\S+ \+(\S+)s", ci)
    if m:
        p["datasource detection (" + m.group(1).replace("DataSource", "") + ")"] = float(m.group(2))
    for stage in ["init-local", "init-network", "modules-config", "modules-final"]:
        m = re.search(r"Finished stage: \(" + stage + r"\) (\S+) seconds", ci)
        if m:
            p["cloud-init stage " + stage] = float(m.group(1))
    m = re.search(r"config-ssh ran successfully @\S+ \+(\S+)s", ci)
    if m:
        p["config-ssh (host keys)"] = float(m.group(1))
    d = s.get("dhcp", "")
    disc = re.search(r"^\[\s*([\d.]+)\].*DHCPDISCOVER", d, re.M)
    bound = re.search(r"^\[\s*([\d.]+)\].*bound to", d, re.M)
    if disc and bound:
        p["DHCP: first DISCOVER to bound"] = float(bound.group(1)) - float(disc.group(1))
        p["DHCP bound, since kernel start"] = float(bound.group(1))
    return p


def stats(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[0], statistics.median(xs), xs[-1]


def fmt(x, nd=2):
    return "" if x is None else f"{x:.{nd}f}"


def main():
    raw, guests, md_out, tsv_out, machine = sys.argv[1:6]
    rows = list(csv.DictReader(open(raw), delimiter="\t"))
    runs = sorted({int(r["run"]) for r in rows})
    by = {(int(r["run"]), r["side"]): r for r in rows}
    pairs = [r for r in runs if (r, "plain") in by and (r, "berth") in by]
    if not pairs:
        sys.exit("boot_report: no complete pair in " + raw)

    def col(side, key):
        return [float(by[(r, side)][key]) for r in pairs if by[(r, side)][key] != ""]

    def ratios(key):
        return [float(by[(r, "berth")][key]) / float(by[(r, "plain")][key]) for r in pairs]

    guest = {}
    for r in pairs:
        for side in ("plain", "berth"):
            try:
                guest[(r, side)] = phases(open(f"{guests}/{side}-{r}.txt").read())
            except OSError:
                guest[(r, side)] = {}
    # Datasource rows carry the datasource's name, which differs (NoCloud, ConfigDrive): one row.
    for g in guest.values():
        for k in [k for k in g if k.startswith("datasource detection (")]:
            g.setdefault("datasources", []).append(k[len("datasource detection ("):-1])
            g["datasource detection"] = g.pop(k)
    names = []
    for g in guest.values():
        for k in g:
            if k != "datasources" and k not in names:
                names.append(k)

    cpu_r, wall_r = stats(ratios("qemu_cpu_s")), stats(ratios("boot_to_ssh_s"))
    stages = stats(col("berth", "stages_to_qemu_ms"))
    rss = stats([float(by[(r, "berth")]["rss_vmm_kib"]) + float(by[(r, "berth")]["rss_dnsmasq_kib"]) for r in pairs])
    with open(tsv_out, "w") as f:
        f.write("QEMU CPU time to SSH: Berth / plain QEMU\tplain QEMU user networking, same guest\t%.3f\t%.3f\t%.3f\t<= 1.02\n" % cpu_r)
        f.write("boot-to-SSH wall time: Berth / plain QEMU\tplain QEMU user networking, same guest\t%.3f\t%.3f\t%.3f\t<= 1.05\n" % wall_r)
        f.write("stages start -> QEMU exec (warm)\tgoal 300 ms\t%.3f\t%.3f\t%.3f\t< 1\n" % tuple(x / 300 for x in stages))
        f.write("RSS vmm + dnsmasq\tgoal 15 MiB\t%.3f\t%.3f\t%.3f\t< 1\n" % tuple(x / 15360 for x in rss))

    ds = sorted({d for (r, side), g in guest.items() for d in g.get("datasources", []) if side == "plain"})
    dsb = sorted({d for (r, side), g in guest.items() for d in g.get("datasources", []) if side == "berth"})
    L = []
    L.append("## Boot: the whole pod locally vs plain QEMU\n")
    L.append("**What.** The test guest (ci/testguest/build.sh, Debian 12, cloud-init) booted through Berth's stages in")
    L.append("network namespaces shaped like a Calico pod (ci/local-pod.sh: net-setup → image-fetch → seed-iso →")
    L.append("dnsmasq → vmm, TCG, 2 vCPUs, 1 GiB), against the same image booted by hand with plain QEMU user")
    L.append("networking (ci/testguest/qemu-user.sh: TCG, 2 vCPUs, 1 GiB, NoCloud seed, SSH forwarded), "
             f"{len(pairs)} pairs in the same run, the order alternating. Both are first boots of a fresh overlay.\n")
    L.append("**How.** Boot-to-SSH: from vmm's (or QEMU's) start until `ssh true` succeeds, polled every second.")
    L.append("QEMU CPU: QEMU's user+sys time (/proc/PID/stat) at that moment: the guest's work, which the shared")
    L.append("machine's load disturbs far less than wall time. The guest's own view: ci/testguest/guest-report.sh")
    L.append("run in each guest once systemd has finished starting up (systemd-analyze, cloud-init analyze show,")
    L.append("dhclient's journal). Stages → QEMU exec: a second start of the same pod (warm image cache, existing")
    L.append("overlay and run dir), from net-setup's start until vmm has a qemu-system child (polled every 5 ms).")
    L.append("RSS: VmRSS of vmm and of dnsmasq while the guest runs.")
    keys = os.environ.get("BENCH_BOOT_HOST_KEYS", "")
    if keys:
        L.append(f"Both guests generate only the SSH host keys {keys} (cloud-init's ssh_genkeytypes,")
        L.append("BENCH_BOOT_HOST_KEYS): RSA's random prime search under TCG varies by about 10 s from boot to")
        L.append("boot (config-ssh took 3.2–12.8 s in 8 boots with the image's default keys), more than all other phases together.")
    L.append("")
    L.append("| figure | min | median | max | goal |")
    L.append("|---|---|---|---|---|")
    for label, key, side in [("QEMU CPU to SSH, Berth (s)", "qemu_cpu_s", "berth"), ("QEMU CPU to SSH, plain QEMU (s)", "qemu_cpu_s", "plain")]:
        L.append(f"| {label} | %s | %s | %s | |" % tuple(fmt(x) for x in stats(col(side, key))))
    L.append("| **ratio CPU Berth / plain** | %.3f | %.3f | %.3f | ≤ 1.02 |" % cpu_r)
    for label, key, side in [("boot-to-SSH, Berth (s)", "boot_to_ssh_s", "berth"), ("boot-to-SSH, plain QEMU (s)", "boot_to_ssh_s", "plain")]:
        L.append(f"| {label} | %s | %s | %s | |" % tuple(fmt(x) for x in stats(col(side, key))))
    L.append("| **ratio wall Berth / plain** | %.3f | %.3f | %.3f | ≤ 1.05 |" % wall_r)
    L.append("| stages start → QEMU exec, warm (ms) | %.0f | %.0f | %.0f | < 300 |" % stages)
    for label, key in [("RSS vmm (KiB)", "rss_vmm_kib"), ("RSS dnsmasq (KiB)", "rss_dnsmasq_kib")]:
        L.append(f"| {label} | %.0f | %.0f | %.0f | |" % stats(col("berth", key)))
    L.append("| RSS vmm + dnsmasq (KiB) | %.0f | %.0f | %.0f | < 15360 |" % rss)
    L.append("")
    L.append("**Where the seconds go, seen from the guest** (medians over the pairs, seconds of guest time;")
    L.append(f"datasource: plain {', '.join(ds) or '?'}, Berth {', '.join(dsb) or '?'}). A phase only Berth has would show as")
    L.append("a difference well outside the pairs' own spread; the spread column is the larger of the two sides'")
    L.append("max − min.\n")
    outside = []
    L.append("| phase (guest) | plain | Berth | Berth − plain | spread |")
    L.append("|---|---|---|---|---|")
    for n in names:
        pv = stats([guest[(r, "plain")].get(n) for r in pairs])
        bv = stats([guest[(r, "berth")].get(n) for r in pairs])
        if not pv or not bv:
            continue
        spread = max(pv[2] - pv[0], bv[2] - bv[0])
        if abs(bv[1] - pv[1]) > spread:
            outside.append(f"{n} ({bv[1] - pv[1]:+.2f} s, spread {spread:.2f} s)")
        L.append(f"| {n} | {fmt(pv[1])} | {fmt(bv[1])} | {bv[1] - pv[1]:+.2f} | {fmt(spread)} |")
    # The host's part: what boot-to-SSH holds beyond the guest's own boot (QEMU's start, vmm, the
    # firmware, GRUB, the SSH poll), anchored at sshd's start where every report has it.
    anchor = "kernel start to sshd started"
    if any(anchor not in guest[(r, side)] for r in pairs for side in ("plain", "berth")):
        anchor = "kernel start to graphical.target"
    rest = {}
    for side in ("plain", "berth"):
        xs = [float(by[(r, side)]["boot_to_ssh_s"]) - guest[(r, side)][anchor] for r in pairs if anchor in guest[(r, side)]]
        rest[side] = stats(xs)
    if rest["plain"] and rest["berth"]:
        rp, rb = rest["plain"], rest["berth"]
        L.append(f"| host side: boot-to-SSH − ({anchor}): QEMU start, vmm, firmware, GRUB, SSH poll | "
                 f"{fmt(rp[1])} | {fmt(rb[1])} | {rb[1] - rp[1]:+.2f} | {fmt(max(rp[2] - rp[0], rb[2] - rb[0]))} |")
        if rb[1] - rp[1] > max(rp[2] - rp[0], rb[2] - rb[0]):
            outside.append(f"host side ({rb[1] - rp[1]:+.2f} s)")
    L.append("")
    if outside:
        L.append("**Phases whose difference lies outside the pairs' spread:** " + "; ".join(outside) + ".")
    else:
        L.append("**No phase is Berth's alone:** every difference between the medians lies within the pairs' own spread.")
    kern = stats([guest[k].get("kernel") for k in guest])
    if kern and kern[0] > 0:
        L.append(f"Resolution: the guest's kernel phase, the same work in every boot of a side, took {kern[0]:.2f}–{kern[2]:.2f} s "
                 f"across this run's boots ({(kern[2] / kern[0] - 1) * 100:.0f} % apart): this machine's TCG speed changes that much from "
                 "boot to boot, and a ratio closer than that needs many more pairs than fit in one run.")
    cpu_b, cpu_p = statistics.median(col("berth", "qemu_cpu_s")), statistics.median(col("plain", "qemu_cpu_s"))
    L.append(f"The ratio of the two sides' medians (not of pairs): CPU {cpu_b / cpu_p:.3f}, wall "
             f"{statistics.median(col('berth', 'boot_to_ssh_s')) / statistics.median(col('plain', 'boot_to_ssh_s')):.3f}.")
    L.append("")
    L.append("Per pair (s): " + "; ".join(
        f"run {r}: CPU {float(by[(r, 'berth')]['qemu_cpu_s']):.1f}/{float(by[(r, 'plain')]['qemu_cpu_s']):.1f}, "
        f"wall {float(by[(r, 'berth')]['boot_to_ssh_s']):.1f}/{float(by[(r, 'plain')]['boot_to_ssh_s']):.1f}" for r in pairs)
        + " (Berth/plain).\n")
    L.append(machine)
    with open(md_out, "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
