#!/bin/sh
# Run inside a booted test guest (ssh ... sh -s < ci/testguest/guest-report.sh): the guest's own view
# of its boot, for ci/bench/boot.sh (parsed by ci/bench/boot_report.py). Waits until systemd has
# finished starting up (the caller bounds it), then prints sections headed "## name".
systemctl is-system-running --wait >/dev/null 2>&1 || true
echo "## systemd-analyze"
systemd-analyze
echo "## critical-chain"
systemd-analyze critical-chain --no-pager
echo "## ssh-chain"
systemd-analyze critical-chain --no-pager ssh.service
echo "## blame"
systemd-analyze blame --no-pager | head -25
echo "## cloud-init"
sudo cloud-init analyze show
echo "## dhcp"
sudo journalctl -b -o short-monotonic --no-pager -t dhclient | grep -E 'DHCPDISCOVER|DHCPACK|bound to' || true
