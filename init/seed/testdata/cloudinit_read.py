#!/usr/bin/python3
"""Read a seed tree with Debian's real cloud-init datasources; print JSON.

Usage: cloudinit_read.py configdrive|nocloud TREE [configdrive|nocloud TREE ...]

TREE is the extracted seed ISO (extracted with xorriso, i.e. Rock Ridge
names). The tree is placed where cloud-init looks for a seed directory
(<cloud_dir>/seed/config_drive or .../seed/nocloud) and the datasource's own
get_data() runs on it, the same code path as a mounted /dev/sr0 after the
mount. Prints what cloud-init then knows: instance id, hostname, public keys,
raw user-data (base64) and the processed user-data parts' content types:
one JSON line for each FORMAT TREE pair (one process: cloud-init's imports
are the slow part).
"""
import base64
import json
import os
import shutil
import sys
import tempfile

from cloudinit import distros, helpers, sources
from cloudinit.sources import DataSourceConfigDrive, DataSourceNoCloud


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        print(__doc__, file=sys.stderr)
        return 2
    code = 0
    for i in range(0, len(args), 2):
        code |= read(args[i], args[i + 1])
    return code


def read(fmt, tree):
    tmp = tempfile.mkdtemp(prefix="berth-ci-")
    try:
        cloud_dir = os.path.join(tmp, "cloud")
        paths = helpers.Paths({"cloud_dir": cloud_dir, "run_dir": os.path.join(tmp, "run")})
        sub = {"configdrive": "config_drive", "nocloud": "nocloud"}[fmt]
        shutil.copytree(tree, os.path.join(paths.seed_dir, sub))
        distro = distros.fetch("debian")("debian", {}, paths)
        if fmt == "configdrive":
            # the seed directory is found first: no block device is probed
            ds = DataSourceConfigDrive.DataSourceConfigDrive({}, distro, paths)
        else:
            # fs_label None: never scan the host's block devices for "cidata"
            sys_cfg = {"datasource": {"NoCloud": {"fs_label": None}}}
            ds = DataSourceNoCloud.DataSourceNoCloud(sys_cfg, distro, paths)
        if not ds.get_data():
            print(json.dumps({"found": False}))
            return 1
        raw = ds.get_userdata_raw()
        if isinstance(raw, str):
            raw = raw.encode()
        parts = []
        ud = ds.get_userdata()
        if ud is not None:
            for part in ud.walk():
                if part.get_content_maintype() == "multipart":
                    continue
                parts.append(part.get_content_type())
        out = {
            "found": True,
            "datasource": str(ds),
            "instance_id": ds.get_instance_id(),
            "hostname": ds.get_hostname().hostname,
            "public_keys": ds.get_public_ssh_keys(),
            "userdata_b64": base64.b64encode(raw or b"").decode(),
            "userdata_parts": parts,
            "metadata": ds.metadata,
        }
        print(json.dumps(out, default=str, sort_keys=True))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
