"""Run every notebook in notebooks/ in number order with papermill (python -m tpap_nb.notebooks)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import PROFILES, REPO

NOTEBOOKS = REPO / "notebooks"


def notebook_paths(only: str | None = None) -> list[Path]:
    """notebooks/NN_*.ipynb in order; `only` picks those whose name starts with it (e.g. '01')."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if p.name.startswith(only)]
        if not paths:
            raise SystemExit(f"No notebook in {NOTEBOOKS} starts with {only!r}.")
    return paths


def run(profile: str, out: Path, only: str | None = None, cell_timeout: int = 900) -> list[tuple[str, float]]:
    """Execute the notebooks headlessly on `profile`; executed copies go to `out` (never back into git)."""
    import papermill as pm

    if profile not in PROFILES:
        raise SystemExit(f"Unknown profile {profile!r}; choose one of {sorted(PROFILES)}.")
    out.mkdir(parents=True, exist_ok=True)
    for var in ("TPAP_DATA", "TPAP_RUNS", "TPAP_FIGURES"):  # the kernels run in notebooks/: pin paths
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    times = []
    for nb in notebook_paths(only):
        t0 = time.perf_counter()
        print(f"[{profile}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), parameters={"profile": profile},
                                cwd=str(NOTEBOOKS), kernel_name="python3", execution_timeout=cell_timeout,
                                progress_bar=False)
        except pm.PapermillExecutionError as err:
            print(f"FAILED {nb.name}: {err.ename}: {err.evalue}\n(executed copy: {out / nb.name})", file=sys.stderr)
            raise SystemExit(1) from None
        except Exception as err:  # e.g. a cell past --cell-timeout, or a dead kernel
            print(f"FAILED {nb.name}: {type(err).__name__}: {err} (per-cell limit {cell_timeout} s; "
                  f"executed copy: {out / nb.name})", file=sys.stderr)
            raise SystemExit(1) from None
        times.append((nb.name, time.perf_counter() - t0))
        print(f"[{profile}] {nb.name} done in {times[-1][1]:.1f} s", flush=True)
    total = sum(t for _, t in times)
    print(f"[{profile}] {len(times)} notebooks in {total:.1f} s")
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="quick", help="smoke | quick | paper")
    ap.add_argument("--out", type=Path, default=None, help="folder for executed copies (default build/<profile>)")
    ap.add_argument("--only", default=None, help="run only notebooks whose name starts with this, e.g. 01")
    ap.add_argument("--cell-timeout", type=int, default=900, help="seconds per cell before failing")
    a = ap.parse_args(argv)
    run(a.profile, a.out or REPO / "build" / a.profile, a.only, a.cell_timeout)


if __name__ == "__main__":
    main()
