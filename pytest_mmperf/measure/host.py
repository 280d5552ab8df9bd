"""Which host a run measured on: the one fact that says whether two sessions' timings are comparable.

The environment fingerprint names the *kind* of machine (CPU model, core count, software stack) so
that a baseline file can be shared by every machine of that kind; it cannot tell two VMs of one kind
apart (``cpu_model`` reads "AMD EPYC" on both), and their absolute timings differed by 1.03x to 2.24x
per benchmark. The host id tells them apart, and is stored beside the fingerprint (never in it: a
committed baseline keeps matching every machine of its kind for bytes, outputs and counts):

* the machine id (``/etc/machine-id``, else ``/var/lib/dbus/machine-id``), written once when an OS
  image is first booted: an ephemeral CI VM gets a new one per job, a dedicated runner keeps its own;
* the CPU's vendor, family, model and stepping from ``/proc/cpuinfo``: a cloud VM moved to other
  hardware under the same image is another host.

Hashed (sha256, 12 hex digits), so the raw machine id, which some tools treat as confidential,
is not written into results documents. Without a machine id (not Linux, a container without one)
the id is ``None``: an unknown host, whose timings are never judged across sessions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

KEY = "host_id"  # where a results document's environment carries it
MACHINE_ID_FILES: tuple[str, ...] = ("/etc/machine-id", "/var/lib/dbus/machine-id")
CPU_FIELDS: tuple[str, ...] = ("vendor_id", "cpu family", "model", "stepping")


def machine_id(paths: Sequence[str | Path] = MACHINE_ID_FILES) -> str | None:
    for path in paths:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def cpu_identity(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """``vendor_id=...;cpu family=...;model=...;stepping=...`` of the first CPU ("" when unknown)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the first processor's block only
        key, sep, value = line.partition(":")
        if sep and key.strip() in CPU_FIELDS:
            found.setdefault(key.strip(), value.strip())
    return ";".join(f"{k}={found[k]}" for k in CPU_FIELDS if k in found)


def host_id(
    paths: Sequence[str | Path] = MACHINE_ID_FILES, cpuinfo: str | Path = "/proc/cpuinfo"
) -> str | None:
    """This host's id (``None`` when the machine has no machine id)."""
    mid = machine_id(paths)
    if mid is None:
        return None
    digest = hashlib.sha256(f"{mid}|{cpu_identity(cpuinfo)}".encode()).hexdigest()
    return digest[:12]
