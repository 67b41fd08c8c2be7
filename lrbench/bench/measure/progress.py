"""The one progress line per finished case, printed by ``lrbench run`` and by each shard's job."""

from __future__ import annotations


def progress_line(index: int, total: int, row: dict) -> str:
    """``[  12/69] ok      op:... 1.234 ms`` (or the reason of a row that is not ``ok``); a
    further pass's line (a row with ``timing_pass``) begins ``pass 2``."""
    detail = (f"{row['median_s'] * 1e3:10.3f} ms" if row["status"] == "ok"
              else str(row.get("reason", ""))[:80])
    where = f"pass {row['timing_pass']} " if row.get("timing_pass") else ""
    return f"{where}[{index:>4}/{total}] {row['status']:<7} {row['case_id']:<60} {detail}"
