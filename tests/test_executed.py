"""Executed copies (tpap_nb.runner: `make run` / `make export`): outputs kept, images shrunk, a header first,
papermill's timings gone; the tracked executed/<profile>/ folders hold every notebook in few megabytes."""
import base64
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from tpap_nb import runner

ROOT = Path(__file__).resolve().parent.parent


def _png(width: int, height: int) -> str:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)  # noise: a PNG that compresses badly
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _papermill_output(path: Path, png: str) -> None:
    """A notebook as papermill leaves it: timings in the notebook's and each cell's metadata, outputs kept."""
    stamp = {"duration": 1.5, "end_time": "2026-12-05T23:47:24+00:00", "start_time": "2026-12-05T23:47:23+00:00",
             "status": "completed", "exception": False}
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"duration": 16.3, "end_time": "2026-12-05T23:47:24.9+00:00",
                                "parameters": {"profile": "smoke"}, "version": "2.7.0"}
    title = nbformat.v4.new_markdown_cell("# 01 · a lesson")
    text = nbformat.v4.new_code_cell("print('epoch 3: PGD-20 0.5 %')", execution_count=1)
    text.outputs = [nbformat.v4.new_output("stream", name="stdout", text="epoch 3: PGD-20 0.5 %\n")]
    plot = nbformat.v4.new_code_cell("fig", execution_count=2)
    plot.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"},
                                           metadata={"image/png": {"width": 2400, "height": 1200}})]
    for cell in (title, text, plot):
        cell.metadata["papermill"] = dict(stamp)
        cell.metadata["tags"] = []
    text.metadata["execution"] = {"iopub.status.busy": "2026-12-05T23:47:23.1Z"}
    nb.cells = [title, text, plot]
    path.write_text(json.dumps(nb))


def test_export_shrinks_images_keeps_text_and_adds_the_header(tmp_path):
    run = tmp_path / "build" / "smoke"
    run.mkdir(parents=True)
    big = _png(2400, 1200)
    _papermill_output(run / "01_lesson.ipynb", big)
    (run / "solutions").mkdir()  # the solutions' outputs beside them are not exported
    _papermill_output(run / "solutions" / "01_lesson.ipynb", big)
    dest = tmp_path / "executed" / "smoke"
    written = runner.export(run, dest=dest)
    assert written == [dest / "01_lesson.ipynb"] and sorted(p.name for p in dest.iterdir()) == ["01_lesson.ipynb"]
    nb = nbformat.read(dest / "01_lesson.ipynb", as_version=4)
    nbformat.validate(nb)
    head = nb.cells[0]
    assert head.cell_type == "markdown" and "profile `smoke`" in head.source and "2026-12-05" in head.source
    assert "executed copy" in head.source.lower() and "notebooks/01_lesson.ipynb" in head.source
    assert nb.cells[1].source == "# 01 · a lesson"
    assert nb.cells[2].outputs[0]["text"] == "epoch 3: PGD-20 0.5 %\n"  # text outputs kept
    img = Image.open(io.BytesIO(base64.b64decode(nb.cells[3].outputs[0]["data"]["image/png"])))
    assert img.width <= runner.MAX_WIDTH and abs(img.height / img.width - 0.5) < 0.01
    assert len(nb.cells[3].outputs[0]["data"]["image/png"]) < len(big) / 4
    assert "image/png" not in nb.cells[3].outputs[0].get("metadata", {})  # no stale width / height
    text = (dest / "01_lesson.ipynb").read_text()
    assert "papermill" not in text and "iopub" not in text and "23:47" not in text  # nothing that changes per run
    again = dest / "again"
    runner.export(run, dest=again)  # the same run exported twice: the same bytes
    assert (again / "01_lesson.ipynb").read_text() == text


def test_exporting_a_copy_again_keeps_one_header(tmp_path):
    src = tmp_path / "01_lesson.ipynb"
    _papermill_output(src, _png(300, 200))
    once = runner.export_notebook(src, tmp_path / "once" / src.name, "smoke", "abc1234", "2026-12-05")
    twice = runner.export_notebook(once, tmp_path / "twice" / src.name, "smoke", "abc1234", "2026-12-05")
    cells = json.loads(twice.read_text())["cells"]
    assert sum(c.get("id") == "executed-copy" for c in cells) == 1 and "commit abc1234" in "".join(cells[0]["source"])


def test_an_empty_run_folder_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="make run PROFILE=quick"):
        runner.export(tmp_path / "quick", dest=tmp_path / "out")


def test_smoke_runs_write_no_executed_copies():
    """`make test` runs smoke without --executed; `make run` passes it; solutions are never copied."""
    make = (ROOT / "Makefile").read_text()
    test_recipe = make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    run_recipe = make.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "--executed" not in test_recipe and "--executed" in run_recipe
    assert "runner --export build/$(PROFILE)" in make
    with pytest.raises(SystemExit, match="notebooks/ only"):
        runner.main(["--dir", "solutions", "--executed", "--profile", "smoke"])


def test_tracked_executed_copies_are_complete_and_small():
    """Each executed/<profile>/ in the repository: all the notebooks, valid, < 8 MB together."""
    folders = sorted(p for p in (ROOT / "executed").glob("*") if p.is_dir()) if (ROOT / "executed").is_dir() else []
    for folder in folders:
        names = sorted(p.name for p in folder.glob("*.ipynb"))
        assert names == [p.name for p in runner.notebook_paths()], f"{folder} lacks notebooks: make export"
        for name in names:
            nb = nbformat.read(folder / name, as_version=4)
            nbformat.validate(nb)
            assert "Executed copy" in nb.cells[0].source and f"notebooks/{name}" in nb.cells[0].source
        assert sum((folder / n).stat().st_size for n in names) < runner.MAX_BYTES, f"{folder} is too big"
