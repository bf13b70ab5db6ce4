"""Compare every figure JSON of two figure folders: python scripts/refactor_check_figures.py OLD NEW.

Ignored: keys naming a timing or the machine (IGNORE_EXACT, IGNORE_PARTS): commit, date, device, runtime. Keys only
in NEW are listed as new (not compared), keys only in OLD as missing; every other value must be equal (floats exactly,
NaN equal to NaN)."""
import json
import sys
from pathlib import Path

IGNORE_EXACT = {"commit", "date", "device", "runtime", "runtime_label", "measured_with", "threads", "figure_seconds"}
IGNORE_PARTS = ("second", "time", "_ms", "minutes", "runtime", "device")


def ignored(key: str) -> bool:
    k = key.lower()
    return k in IGNORE_EXACT or any(p in k for p in IGNORE_PARTS)


def walk(old, new, path, out):
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if ignored(str(k)):
                continue
            if k not in new:
                out["missing"].append(f"{path}/{k} = {json.dumps(old[k])[:100]}")
            else:
                walk(old[k], new[k], f"{path}/{k}", out)
        for k in new:
            if k not in old and not ignored(str(k)):
                out["new"].append(f"{path}/{k} = {json.dumps(new[k])[:100]}")
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out["diff"].append(f"{path}: length {len(old)} -> {len(new)}")
        for i, (a, b) in enumerate(zip(old, new)):
            walk(a, b, f"{path}[{i}]", out)
    elif old != new and not (old != old and new != new):  # NaN on both sides is the same missing number
        out["diff"].append(f"{path}: {json.dumps(old)[:200]} -> {json.dumps(new)[:200]}")


def main(a, b):
    a, b = Path(a), Path(b)
    names = sorted(({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")}) - {"runtimes.json"})
    same = values_same = 0
    for name in names:
        if name == "runtimes.json":
            continue
        if not (a / name).exists() or not (b / name).exists():
            print(f"{name}: only in {'new' if (b / name).exists() else 'old'}")
            continue
        out = {"diff": [], "missing": [], "new": []}
        walk(json.loads((a / name).read_text()), json.loads((b / name).read_text()), "", out)
        if not any(out.values()):
            same += 1
            print(f"{name}: identical")
            continue
        values_same += not out["diff"]
        print(f"{name}: {len(out['diff'])} differing, {len(out['missing'])} missing, {len(out['new'])} new")
        for kind in ("diff", "missing", "new"):
            for line in out[kind]:
                print(f"   {kind}: {line}")
    both = sum((a / n).exists() and (b / n).exists() for n in names)
    print(f"{both} figures in both: {same} identical, {values_same} more with every shared value equal and only keys "
          "added or removed (ignoring timings, commit, device, date, runtime)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
