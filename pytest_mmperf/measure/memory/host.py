"""The process's peak resident memory during a round: informational (see the package docstring)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

PROCESS_PEAK_RSS = "process_peak_rss_bytes"


class HostRssProbe:
    name = "host"

    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self._proc = proc
        self.resettable = (proc / "clear_refs").exists()

    def reset(self) -> None:
        if not self.resettable:
            return
        try:
            # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
            (self._proc / "clear_refs").write_text("5")
        except OSError:
            self.resettable = False

    def read(self) -> dict[str, float]:
        hwm = self._vmhwm_bytes()
        if hwm is None:
            # lifetime peak: ru_maxrss is KiB on Linux, bytes on macOS
            scale = 1 if sys.platform == "darwin" else 1024
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return {PROCESS_PEAK_RSS: float(hwm)}

    def _vmhwm_bytes(self) -> int | None:
        try:
            for line in (self._proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
