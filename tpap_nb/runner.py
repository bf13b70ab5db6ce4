"""Run the notebooks (or their solutions) in number order with papermill, record how long each took, and stamp
those times into the notebooks.

    python -m tpap_nb.runner --profile smoke                  notebooks/*.ipynb (make run, make test)
    python -m tpap_nb.runner --dir solutions --profile smoke  solutions/*.ipynb (make solutions, make test)
    python -m tpap_nb.runner --stamp                          rewrite every notebook's run-time line and
                                                                 install cell from the records (make readme)
    python -m tpap_nb.runner --profile quick --executed       as the first, and write executed copies (make run)
    python -m tpap_nb.runner --export build/quick             executed copies of an existing run (make export)

Each run writes its per-notebook seconds (profile, device, torch threads, commit, date) into runtimes.json
beside the run's figures (`config.figures_root()`: figures/<profile>/ under `make run`, else build/figures/).
The stamp reads the tracked records, figures/<profile>/runtimes.json, and rewrites the line between
`<!-- runtime -->` and `<!-- /runtime -->` in the first markdown cell of every notebook and solution, so the
run time a reader sees is the last measured one, never typed. tests/test_lessons.py checks the stamps.

Executed copies (`--executed`, `--export`): the papermill outputs of a run, cleaned for reading on GitHub, go to
executed/<profile>/NN_*.ipynb (tracked): outputs kept, PNG outputs shrunk to MAX_WIDTH pixels and a palette,
papermill's timings dropped, a first cell saying what ran. The source notebooks stay stripped; `make test`'s
smoke runs write no executed copies. tests/test_executed.py checks them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import time
from pathlib import Path

from .config import PROFILES, REPO, figures_root, get_device, tracked_figures

FOLDERS = ("notebooks", "solutions")  # lesson notebooks and their worked solutions, same file names
NOTEBOOKS = REPO / "notebooks"
RUNTIMES = "runtimes.json"
EXECUTED = REPO / "executed"  # executed/<profile>/NN_*.ipynb: the copies GitHub renders
MAX_WIDTH = 900  # pixels of a PNG output in an executed copy
MAX_BYTES = 8_000_000  # all of one profile's executed copies together
RUNTIME_START, RUNTIME_END = "<!-- runtime -->", "<!-- /runtime -->"
EXERCISE_START, EXERCISE_END = "<!-- exercise-time -->", "<!-- /exercise-time -->"
INSTALL_TAG = "install"
TORCHATTACKS = "torchattacks==3.5.1"  # as the Makefile installs it (--no-deps, docs/install.md)


def notebook_paths(only: str | None = None, folder: Path | str = "notebooks") -> list[Path]:
    """<folder>/NN_*.ipynb in order (folder: 'notebooks', 'solutions' or a path); `only` picks those whose name
    starts with it (e.g. '01'). A missing or empty folder gives [] (solutions/ may not exist yet)."""
    folder = _folder(folder)
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb")) if folder.is_dir() else []
    if only:
        paths = [p for p in paths if p.name.startswith(only)]
        if not paths:
            raise SystemExit(f"No notebook in {folder} starts with {only!r}.")
    return paths


def _folder(folder: Path | str) -> Path:
    folder = Path(folder)
    return folder if folder.is_absolute() else REPO / folder


def _key(path: Path) -> str:
    """How a notebook is named in the records: 'notebooks/00_start_here.ipynb' (its folder and file name)."""
    return f"{path.parent.name}/{path.name}"


# ---------------------------------------------------------------- run times
def run_environment(profile: str) -> dict:
    """Where a run happens: the device the profile resolves to, torch threads, commit, date."""
    import torch

    from .plots import git_commit

    dev = get_device(PROFILES[profile]["device"] if profile in PROFILES else "auto")
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    return {"device": device, "threads": torch.get_num_threads(), "commit": git_commit(),
            "date": _dt.datetime.now().isoformat(timespec="seconds")}


def record_times(times: list[tuple[Path, float]], profile: str, env: dict, folder: Path | None = None) -> Path:
    """Merge per-notebook seconds into <folder>/runtimes.json ({profile: {'notebooks/NN_x.ipynb': {...}}}):
    the notebooks just run replace their old entries, the others keep theirs."""
    path = (folder if folder is not None else figures_root()) / RUNTIMES
    records = json.loads(path.read_text()) if path.exists() else {}
    section = records.setdefault(profile, {})
    for nb, seconds in times:
        section[_key(nb)] = {"seconds": round(seconds, 1), **env}
    records[profile] = dict(sorted(section.items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


def run(profile: str, out: Path, only: str | None = None, cell_timeout: int = 900,
        folder: Path | str = "notebooks", times: Path | None = None,
        executed: Path | None = None) -> list[tuple[str, float]]:
    """Execute the notebooks of `folder` headlessly on `profile`, each in its own folder as working directory;
    papermill's outputs go to `out` (never into git); the seconds of each go to `times`/runtimes.json
    (default: beside the run's figures, `config.figures_root()`); with `executed` (a folder, `make run`:
    executed/<profile>/) a cleaned copy of each notebook that ran goes there too."""
    import papermill as pm

    if profile not in PROFILES:
        raise SystemExit(f"Unknown profile {profile!r}; choose one of {sorted(PROFILES)}.")
    paths = notebook_paths(only, folder)
    if not paths:
        print(f"[{profile}] no notebooks in {_folder(folder)}: nothing to run")
        return []
    out.mkdir(parents=True, exist_ok=True)
    for var in ("TPAP_DATA", "TPAP_RUNS", "TPAP_FIGURES"):  # the kernels run in the notebooks' folder: pin paths
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())
    env = run_environment(profile)
    times = Path(times).resolve() if times is not None else figures_root()
    done = []
    for nb in paths:
        t0 = time.perf_counter()
        print(f"[{profile}] {_key(nb)} ...", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), parameters={"profile": profile},
                                cwd=str(nb.parent), kernel_name="python3", execution_timeout=cell_timeout,
                                progress_bar=False)
        except pm.PapermillExecutionError as err:
            print(f"FAILED {_key(nb)}: {err.ename}: {err.evalue}\n(executed copy: {out / nb.name})", file=sys.stderr)
            raise SystemExit(1) from None
        except Exception as err:  # e.g. a cell past --cell-timeout, or a dead kernel
            print(f"FAILED {_key(nb)}: {type(err).__name__}: {err} (per-cell limit {cell_timeout} s; "
                  f"executed copy: {out / nb.name})", file=sys.stderr)
            raise SystemExit(1) from None
        done.append((nb, time.perf_counter() - t0))
        record_times(done[-1:], profile, env, times)  # after each one: a later failure keeps the earlier times
        if executed is not None:
            export_notebook(out / nb.name, Path(executed) / nb.name, profile, env["commit"], env["date"][:10])
        print(f"[{profile}] {nb.name} done in {done[-1][1]:.1f} s", flush=True)
    total = sum(t for _, t in done)
    print(f"[{profile}] {len(done)} notebooks in {total:.1f} s; times in {times / RUNTIMES}")
    return [(nb.name, t) for nb, t in done]


# ---------------------------------------------------------------- executed copies
def shrink_png(data: str, max_width: int = MAX_WIDTH) -> str:
    """A base64 PNG output no wider than `max_width` pixels and on a 256-colour palette, base64 again (plots
    keep their look at a fraction of the bytes); the input itself when that would not be smaller."""
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(data)
    img = Image.open(io.BytesIO(raw))
    img.load()
    wide = img.width > max_width
    if wide:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
    buf = io.BytesIO()
    img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
    small = buf.getvalue()
    return base64.b64encode(small).decode("ascii") if wide or len(small) < len(raw) else data


def executed_header(source: str, profile: str, commit: str, date: str) -> dict:
    """The first cell of an executed copy: what ran, where its source is."""
    text = (f"**Executed copy** (profile `{profile}`, commit {commit}, {date}); the source notebook is "
            f"[{source}](../../{source}). Outputs are as that run left them, images shrunk; run the source "
            "notebook to get your own.")
    return {"cell_type": "markdown", "id": "executed-copy", "metadata": {}, "source": _source(text)}


def clean_executed(nb: dict, source: str, profile: str, commit: str, date: str,
                   max_width: int = MAX_WIDTH) -> dict:
    """A papermill output as an executed copy: papermill's and Jupyter's timings dropped (they change every
    run), PNG outputs shrunk (`shrink_png`), the header cell first (an older header replaced)."""
    nb["metadata"].pop("papermill", None)
    nb["metadata"].pop("widgets", None)
    cells = [c for c in nb["cells"] if c.get("id") != "executed-copy"]
    for cell in cells:
        meta = cell.setdefault("metadata", {})
        for key in ("papermill", "execution", "collapsed", "scrolled"):
            meta.pop(key, None)
        if meta.get("tags") == []:
            del meta["tags"]
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                png = data["image/png"]
                data["image/png"] = shrink_png("".join(png) if isinstance(png, list) else png, max_width)
                out.get("metadata", {}).pop("image/png", None)  # the old width and height
    nb["cells"] = [executed_header(source, profile, commit, date), *cells]
    return nb


def export_notebook(src: Path, dest: Path, profile: str, commit: str, date: str | None = None) -> Path:
    """Write the executed copy of papermill's output `src` (build/<profile>/NN_x.ipynb) to `dest`."""
    import nbformat

    nb = json.loads(Path(src).read_text())
    date = date or str(nb["metadata"].get("papermill", {}).get("end_time") or _dt.date.today())[:10]
    nb = clean_executed(nb, f"notebooks/{Path(src).name}", profile, commit, date)
    nbformat.validate(nbformat.from_dict(nb))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(dumps(nb))
    return dest


def export(src: Path, profile: str | None = None, dest: Path | None = None) -> list[Path]:
    """Executed copies of the notebooks papermill wrote to `src` (build/<profile>/) into `dest`
    (executed/<profile>/); each copy's commit and date are its run's record in runtimes.json (the tracked
    figures/<profile>/, else the figures folder), else this checkout's commit and papermill's end time."""
    from .plots import git_commit

    src = Path(src)
    profile = profile or src.name
    paths = sorted(src.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise SystemExit(f"No executed notebooks (NN_*.ipynb) in {src}: run them first (make run PROFILE={profile}).")
    dest = Path(dest) if dest is not None else EXECUTED / profile
    records = {}
    for folder in (figures_root(), tracked_figures(profile)):
        path = folder / RUNTIMES
        if path.is_file():
            records.update(json.loads(path.read_text()).get(profile, {}))
    written = []
    for nb in paths:
        rec = records.get(f"notebooks/{nb.name}", {})
        written.append(export_notebook(nb, dest / nb.name, profile, rec.get("commit") or git_commit(),
                                       rec.get("date", "")[:10] or None))
    total = sum(p.stat().st_size for p in dest.glob("*.ipynb"))
    print(f"[{profile}] {len(written)} executed copies in {dest} ({total / 1e6:.1f} MB in all)")
    if total > MAX_BYTES:
        print(f"warning: {dest} holds {total / 1e6:.1f} MB, over {MAX_BYTES / 1e6:.0f} MB", file=sys.stderr)
    return written


# ---------------------------------------------------------------- the stamp
def load_runtimes(figures: Path | None = None) -> dict[str, dict]:
    """{profile: {'notebooks/NN_x.ipynb': record}} from the tracked figures/<profile>/runtimes.json."""
    figures = Path(figures) if figures is not None else tracked_figures()
    found = {}
    for path in sorted(figures.glob(f"*/{RUNTIMES}")):
        section = json.loads(path.read_text()).get(path.parent.name)
        if section:
            found[path.parent.name] = section
    order = list(PROFILES) + sorted(set(found) - set(PROFILES))
    return {p: found[p] for p in order if p in found}


def duration(seconds: float) -> str:
    """'41 s', '5 min 12 s', '1 h 3 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {round((s % 3600) / 60)} min"


def _where(rec: dict) -> str:
    device = rec.get("device", "?")
    if device == "cpu":
        n = rec.get("threads")
        device = f"CPU, {n} thread{'s' if n != 1 else ''}" if n else "CPU"
    return f"{device}, commit {rec.get('commit', '?')}"


def runtime_line(key: str, runtimes: dict[str, dict]) -> str:
    """The sentence the stamp writes for notebook `key` ('notebooks/NN_x.ipynb'), from the records."""
    recs = [(p, section[key]) for p, section in runtimes.items() if key in section]
    if not recs:
        verb = "make solutions" if key.startswith("solutions/") else "make run"
        return f"Measured run time: none recorded yet (`{verb} PROFILE=...` records it in figures/<profile>/)."
    wheres = {_where(r) for _, r in recs}
    if len(wheres) == 1:
        return ("Measured run time: " + ", ".join(f"`{p}` {duration(r['seconds'])}" for p, r in recs)
                + f" ({wheres.pop()}).")
    return "Measured run time: " + ", ".join(f"`{p}` {duration(r['seconds'])} ({_where(r)})" for p, r in recs) + "."


def exercise_line(key: str, runtimes: dict[str, dict]) -> str:
    """How long notebook `key`'s exercises take: the recorded run time of its worked solutions, all exercises
    together (setup included), or that none is recorded yet."""
    sol = "solutions/" + key.split("/", 1)[1]
    line = runtime_line(sol, runtimes)
    if line.startswith("Measured run time: none"):
        return (f"How long: not measured yet; the worked solutions (`{sol}`) record their run time with "
                "`make solutions PROFILE=...`.")
    return line.replace("Measured run time: ", f"How long: all exercises as worked in `{sol}`, setup included: ", 1)


def _source_url() -> str | None:
    """The kit's source repository, if pyproject.toml names one under [project.urls] (it names none today)."""
    pyproject = REPO / "pyproject.toml"
    text = pyproject.read_text() if pyproject.is_file() else ""
    section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if not section:
        return None
    urls = dict(re.findall(r'^\s*"?([\w -]+?)"?\s*=\s*"([^"]+)"', section.group(1), re.M))
    for name in ("Source", "Repository", "source", "repository", "Homepage", "homepage"):
        if urls.get(name, "").startswith("https://"):
            return urls[name]
    return None


def install_source(url: str | None = None) -> str:
    """The first code cell of every notebook: on a hosted notebook service (Colab, Kaggle), where `tpap_nb` is
    not importable, install the kit and torchattacks as the README does; a no-op everywhere else."""
    if url:
        missing = f'kit = "tpap-nb @ git+{url}"'
    else:
        missing = ('raise SystemExit("tpap_nb is not installed and no copy of the kit is in this folder, its parent "\n'
                   '                         "or a subfolder: get the kit\'s folder (with pyproject.toml), then run "\n'
                   '                         "%pip install -e KIT_FOLDER and %pip install --no-deps '
                   + TORCHATTACKS + '")')
    return f"""# Hosted notebooks (Colab, Kaggle): where `tpap_nb` is not importable, install the kit, then torchattacks
# with --no-deps, as the README does; everywhere else this cell does nothing.
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("tpap_nb") is None:
    here = Path.cwd()
    kits = [p for p in (here.parent, here, *sorted(here.glob("*/")))
            if (p / "pyproject.toml").is_file() and (p / "tpap_nb" / "__init__.py").is_file()]
    if kits:
        kit = str(kits[0])
        sys.path.insert(0, kit)  # importable in this kernel without a restart
    else:
        {missing}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", kit] if kits else
                   [sys.executable, "-m", "pip", "install", "-q", kit], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "{TORCHATTACKS}"], check=True)
    importlib.invalidate_caches()"""


def _source(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines with their newlines."""
    return text.splitlines(keepends=True)


def stamp_notebook(nb: dict, key: str, runtimes: dict[str, dict], url: str | None = None) -> dict:
    """`nb` with its run-time line (first markdown cell) and its install cell (first code cell) up to date."""
    line = f"{RUNTIME_START}\n{runtime_line(key, runtimes)}\n{RUNTIME_END}"  # own lines: Markdown renders it
    cells = nb["cells"]
    first_md = next((c for c in cells if c["cell_type"] == "markdown"), None)
    if first_md is None:
        raise ValueError(f"{key}: no markdown cell to carry the run time")
    text = "".join(first_md["source"])
    if RUNTIME_START in text and RUNTIME_END in text:
        before, rest = text.split(RUNTIME_START, 1)
        text = before + line + rest.split(RUNTIME_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + line
    first_md["source"] = _source(text)
    if key.startswith("notebooks/"):  # how long the exercises take: their worked solutions' recorded run time
        exercises = next((c for c in cells if c["cell_type"] == "markdown"
                          and "".join(c["source"]).lstrip().startswith("## Exercises")), None)
        if exercises is not None:
            text = "".join(exercises["source"])
            line = f"{EXERCISE_START}\n{exercise_line(key, runtimes)}\n{EXERCISE_END}"
            if EXERCISE_START in text and EXERCISE_END in text:
                before, rest = text.split(EXERCISE_START, 1)
                text = before + line + rest.split(EXERCISE_END, 1)[1]
            else:
                head, _, body = text.partition("\n")
                text = f"{head}\n{line}\n\n{body.lstrip(chr(10))}"
            exercises["source"] = _source(text)
    cell = {"cell_type": "code", "execution_count": None, "id": "install", "metadata": {"tags": [INSTALL_TAG]},
            "outputs": [], "source": _source(install_source(url))}
    old = [i for i, c in enumerate(cells) if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    for i in reversed(old):
        del cells[i]
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    cells.insert(first_code, cell)
    return nb


def dumps(nb: dict) -> str:
    """The repository's notebook formatting (one-space indent, UTF-8 kept, final newline)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def stamp(paths: list[Path] | None = None, runtimes: dict | None = None, check: bool = False) -> list[Path]:
    """Stamp every notebook and solution (or `paths`); returns those that changed (with check=True: that would)."""
    paths = paths if paths is not None else [p for f in FOLDERS for p in notebook_paths(folder=f)]
    runtimes = runtimes if runtimes is not None else load_runtimes()
    url = _source_url()
    stale = []
    for path in paths:
        old = path.read_text()
        new = dumps(stamp_notebook(json.loads(old), _key(path), runtimes, url))
        if new != old:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help=" | ".join(PROFILES) + " (default quick; with --export: the "
                    "folder's name)")
    ap.add_argument("--dir", default="notebooks", help="folder of the notebooks to run: notebooks (default) or "
                    "solutions")
    ap.add_argument("--out", type=Path, default=None, help="folder for papermill's outputs (default build/<profile>, "
                    "build/<profile>/<dir> for another folder)")
    ap.add_argument("--only", default=None, help="run only notebooks whose name starts with this, e.g. 01")
    ap.add_argument("--cell-timeout", type=int, default=900, help="seconds per cell before failing")
    ap.add_argument("--times", type=Path, default=None, help="folder of the runtimes.json to record into "
                    "(default: the figures folder, $TPAP_FIGURES or build/figures)")
    ap.add_argument("--stamp", action="store_true", help="run nothing: rewrite every notebook's run-time line and "
                    "install cell from figures/<profile>/runtimes.json")
    ap.add_argument("--check", action="store_true", help="with --stamp: only say which notebooks are stale")
    ap.add_argument("--executed", action="store_true", help="also write executed copies of the notebooks run "
                    "into executed/<profile>/ (make run; not with --dir solutions)")
    ap.add_argument("--export", type=Path, default=None, metavar="RUN_FOLDER", help="run nothing: write executed "
                    "copies of the papermill outputs in RUN_FOLDER (e.g. build/quick) into executed/<profile>/")
    a = ap.parse_args(argv)
    if a.export is not None:
        export(a.export, a.profile)
        return
    a.profile = a.profile or "quick"
    if a.executed and a.dir != "notebooks":
        raise SystemExit("--executed writes copies of notebooks/ only; the solutions stay in build/.")
    if a.stamp:
        changed = stamp(check=a.check)
        verb = "stale" if a.check else "stamped"
        print(f"run-time stamps: {len(changed)} {verb}" + "".join(f"\n  {_key(p)}" for p in changed))
        if a.check and changed:
            sys.exit(1)
        return
    out = a.out or REPO / "build" / a.profile / ("" if a.dir == "notebooks" else Path(a.dir).name)
    run(a.profile, out, a.only, a.cell_timeout, a.dir, a.times, EXECUTED / a.profile if a.executed else None)


if __name__ == "__main__":
    main()
