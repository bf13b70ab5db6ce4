"""Checkpoints of a training run: written atomically, read safely (weights_only), checked against the model they
are loaded into, rebuilt into their model (`load_model`), and one process at a time per checkpoint (`RunLock`).

`train.fit` writes and resumes them; `runs` reuses and ships them.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import pickle
import secrets
import socket
import time
from pathlib import Path

import torch
import torch.nn as nn

from .checks import first_line
from .models import build_model


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says why and what to do."""


def save_checkpoint(path: Path, model, optimizer, scheduler, meta, history, generator) -> None:
    """Write atomically: a temp file of this writer's own (pid + random), fsynced, then renamed over the old one,
    so a run killed mid-write leaves the last good checkpoint (and two writers never share a temp file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": "tpap_nb-checkpoint-1", "meta": meta, "history": history,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "generator": generator.get_state()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError, AttributeError):  # the rename itself, where directories can be fsynced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


CHECKPOINT_PARTS = {"meta": dict, "history": list, "model": dict}
META_KEYS = ("model", "dataset", "num_classes", "in_channels", "width")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint safely (weights_only=True: no arbitrary code is unpickled); any unreadable file,
    or one without the parts of a tpap_nb checkpoint, is a CheckpointError naming it and what to do."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file: remove or rename it (a checkpoint "
                              "is one .pt file written by tpap_nb.fit).")
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {path}.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a write into it was cut off before anything was saved. "
                              "Delete it to retrain.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only's refusal: its own line says what it refused
        boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
        why = next((ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith(boiler)),
                   first_line(err))
        raise CheckpointError(
            f"{path} is not a loadable tpap_nb checkpoint ({why}). It was refused "
            "without running any code inside it; delete it to retrain, or check where it came from."
        ) from None
    except Exception as err:  # truncated or damaged: RuntimeError (zip reader), OSError, EOFError, ...
        raise CheckpointError(
            f"{path} ({size} bytes) cannot be read: {type(err).__name__}: {first_line(err)}. It is truncated or "
            "damaged (a copy cut short, a full disk); delete it to retrain, or copy it again."
        ) from None
    if not isinstance(state, dict) or state.get("format") != "tpap_nb-checkpoint-1":
        raise CheckpointError(f"{path} is not a tpap_nb checkpoint (no tpap_nb metadata): pass a file written by "
                              "tpap_nb.fit, or delete it to retrain.")
    problems = [f"no {part!r} ({kind.__name__})" for part, kind in CHECKPOINT_PARTS.items()
                if not isinstance(state.get(part), kind)]
    if not problems:
        problems = [f"its meta lacks {k!r}" for k in META_KEYS if k not in state["meta"]]
    if problems:
        raise CheckpointError(f"{path} is marked as a tpap_nb checkpoint but has {', '.join(problems)}: it was "
                              "written by something else or damaged. Delete it to retrain.")
    return state


def check_weights(path: str | Path, model: nn.Module, weights: dict) -> None:
    """The checkpoint's weights fit `model` itself (names and shapes), else one CheckpointError naming both."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k}: saved {tuple(weights[k].shape)}, this model {tuple(v.shape)}"
              for k, v in own.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = ([f"{len(shapes)} shape(s) differ ({shapes[0]}{', ...' if len(shapes) > 1 else ''})"] if shapes else []) + (
        [f"{len(missing)} tensor(s) of this model missing ({missing[0]}{', ...' if len(missing) > 1 else ''})"]
        if missing else []) + (
        [f"{len(unexpected)} unknown to it ({unexpected[0]}{', ...' if len(unexpected) > 1 else ''})"]
        if unexpected else [])
    raise CheckpointError(f"{path} holds the weights of another network than this "
                          f"{getattr(model, 'arch', type(model).__name__)}: {'; '.join(parts)}. Build the model it "
                          "was made for (its meta names model, width, in_channels, num_classes) or delete it to "
                          "retrain.")


def load_model(path: str | Path, dataset: str | None = None, model: str | None = None, device="cpu"):
    """Rebuild the model a checkpoint describes; refuse one made for another model or dataset."""
    state = read_checkpoint(path)
    meta = state["meta"]
    for key, want in (("dataset", dataset), ("model", model)):
        if want is not None and meta[key] != want:
            raise CheckpointError(
                f"{path} holds a {meta['model']} trained on {meta['dataset']}, but {key} {want!r} was "
                f"expected. Pass the checkpoint made for {want!r} or train one (tpap_nb.get_or_train)."
            )
    net = build_model(meta["model"], meta["num_classes"], meta["in_channels"], meta["width"], pretrained=False)
    check_weights(path, net, state["model"])
    net.load_state_dict(state["model"])
    net.meta = meta
    return net.to(device).eval(), state["history"]


class RunLock:
    """`<ckpt>.lock`: one process at a time trains into a checkpoint; a second one waits (saying who holds it).

    An flock on the file, which the kernel drops when its holder dies: a lock left by a killed process is
    taken over by the next run. The file says who holds it (pid, host, since) for the waiting message; on
    taking it, temp files that dead writers left beside the checkpoint are removed.
    """

    def __init__(self, ckpt: str | Path, wait: bool = True, poll: float = 0.5):
        self.ckpt = Path(ckpt)
        self.path = self.ckpt.with_name(self.ckpt.name + ".lock")
        self.wait, self.poll, self.fd = wait, poll, None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; runs into one checkpoint are not guarded there
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd)
                os.close(fd)
                if not self.wait:
                    raise CheckpointError(f"{self.ckpt} is in progress: {holder} is training into it. Wait for it "
                                          "to finish (then this run reuses it), or choose another path.") from None
                if not told:
                    print(f"{self.ckpt.name}: {holder} is training into it; waiting for it to finish "
                          "(this run then resumes from its checkpoint).", flush=True)
                    told = True
                time.sleep(self.poll)
                continue
            except OSError:  # a file system without locks: go on unguarded
                os.close(fd)
                return self
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the last holder removed the file while we waited on it: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
            self.fd = fd
            # Only the holder writes: any other temp file beside the checkpoint is a dead writer's.
            for tmp in self.ckpt.parent.glob(glob.escape(self.ckpt.name) + ".*tmp"):
                if not tmp.name.startswith(f"{self.ckpt.name}.{os.getpid()}-"):
                    tmp.unlink(missing_ok=True)
            return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            return f"process {info['pid']} on {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # before unlocking: a waiter on this file sees it gone and retries
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
