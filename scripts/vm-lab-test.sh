#!/usr/bin/env bash
# The VM-lab tests (tests/vm, marker `vm`): `lab up --vm` (hub + 2 nodes as qemu TCG VMs with
# Debian's cloud kernel, images from a registry container on this machine), the swarm-mode steps
# preflight..hub-service applied for real (kernel nfsd, XFS project quotas, per-user NFS volumes),
# verify, the persistence proofs (an NFS volume; a Jupyter server writing a file, stopped, its
# node drained, started on the other node, reading it back), then `lab down`; and, on a 1+1 VM
# lab of its own, the classic track's /home: kernel NFS export, autofs on the node (test_vm_classic);
# and, on a 1+1 VM lab with a dedicated NFS host (`lab up --vm --nfs-host`), the same track with
# storage.server = the VM "nfs": the spawn makes the user's folder there, the file a user's server
# writes on the node lands there with the user's uid, the quota reads back there (test_vm_nfs_host).
# Not part of scripts/test.sh: TCG emulation on 2 cores takes too long for the main CI run
# (figures in RELIABILITY.md, "VM lab"). Installs what it needs from Debian first.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
ls /boot/vmlinuz-*-cloud-amd64 >/dev/null 2>&1 || need+=(linux-image-cloud-amd64)
if [ ${#need[@]} -gt 0 ]; then
    echo "vm-lab-test: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" ||
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; }
fi
export HUBWIZARD_VM_TESTS=1
# The fixture brings its lab down whatever happens; timeout -k leaves time for that. Three labs one
# after the other (1+2, classic 1+1, 1+1+nfs); the two swarm-mode ones each pull the hub base under TCG.
exec timeout -k 120 170m python3 -m pytest -q -p no:cacheprovider -s -m vm tests/vm "$@"
