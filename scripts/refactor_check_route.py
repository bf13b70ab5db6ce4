"""The route of cfg from fit: every tpap_nb function called during one tiny fit (1 epoch, evaluated) that is handed
a config (an argument that is a Mapping holding 'xi' and 'epochs'), each counted once, in call order; the modules
crossed, climbs to a higher layer (docs/layout.md's layers), returns to a module already left.

    PYTHONPATH=<tree> TPAP_THREADS=1 TPAP_PRECISION=float32 python scripts/refactor_check_route.py
"""
import sys
from collections.abc import Mapping

import tpap_nb as tp

LAYER = {"runtime": 0, "settings": 0, "config": 0, "checks": 0, "paper": 0, "stats": 0, "plots": 0, "data": 1,
         "models": 2, "purify": 3, "attacks": 3, "evaluate": 4, "train": 5, "checkpoints": 5, "runs": 6,
         "distributed": 6, "experiments": 7}
root = tp.__file__.rsplit("/", 1)[0]
seq, funcs, edges = [], [], []


def module_of(code):
    rel = code.co_filename[len(root) + 1:-3].replace("/", ".")
    return rel.split(".")[0]


def prof(frame, event, arg):
    if event != "call" or not frame.f_code.co_filename.startswith(root):
        return
    code = frame.f_code
    args = [a for a in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount] if a != "self"]
    if any(isinstance(frame.f_locals.get(a), Mapping) and {"xi", "epochs"} <= set(frame.f_locals.get(a)) for a in args):
        mod = module_of(code)
        if f"{mod}.{code.co_name}" not in funcs and (not seq or seq[-1] != mod):  # each function once: a reader's
            seq.append(mod)                                                        # route, not the loops' repeats
        caller = frame.f_back.f_code
        if caller.co_filename.startswith(root) and module_of(caller) != mod:
            edge = (module_of(caller), mod)
            if edge not in edges:
                edges.append(edge)
        f = f"{mod}.{code.co_name}"
        if f not in funcs:
            funcs.append(f)


cfg = tp.get_profile("smoke", epochs=1, n_train=64, n_eval=8, eval_every=1)
data = tp.load_dataset("digits").subset(n_train=64)
tp.set_seed(0)
model = tp.build_model("small_cnn", 10, 1, width=4)
sys.setprofile(prof)
tp.fit(model, data, cfg, progress=False)
sys.setprofile(None)
seq = seq[1:] if seq and seq[0] == "__init__" else seq
climbs = sum(LAYER[b] > LAYER[a] for a, b in zip(seq, seq[1:]))
returns = sum(b in seq[:i] for i, b in enumerate(seq) if i and seq[i - 1] != b)
print("functions handed cfg:", ", ".join(funcs))
print("module sequence:", " -> ".join(seq))
up = [e for e in edges if LAYER[e[1]] > LAYER[e[0]]]
print("hand-offs between modules:", ", ".join(f"{a}->{b}" for a, b in edges), f"({len(edges)}; upward: {up})")
print(f"modules crossed: {len(set(seq))} ({', '.join(sorted(set(seq)))}); climbs back up a layer: {climbs}; "
      f"returns to a module already left: {returns}")
