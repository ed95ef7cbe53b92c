"""pick: the fan-in of the sweep, the best of train's items.

Input `models` (train's output `model`, one per item: /ferry/inputs/models/<index>). Arguments
`--accuracies $(steps.train.results.accuracy) --cs $(steps.train.results.c)`: JSON lists, one
value per item that succeeded, in item order, like the item directories. The best is the
highest cross-validated accuracy; a tie goes to the smaller c (the stronger regularisation,
the simpler model). Each model file is checked to hold the c its item reported.
Outputs `model` (the best item's file, unchanged) and `sweep` (JSON: every item). Results
`best_c`, `best_accuracy`, `best_index` and `sweep` ([{index, c, accuracy}]: what a reader of
the run's status sees without opening the store; the best entries first when it would not fit
in a result's 4096 bytes).
"""
import argparse
import json
import os
import pickle
import shutil

from ferry_step import indexed_inputs, json_argument, log, output_path, write_json, write_metrics, write_result, fail

RESULT_MAX_BYTES = 4096


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accuracies", required=True, help="JSON list: each item's accuracy")
    parser.add_argument("--cs", required=True, help="JSON list: each item's c")
    args = parser.parse_args()
    accuracies = json_argument(args.accuracies, "--accuracies")
    cs = json_argument(args.cs, "--cs")
    models = indexed_inputs("models")
    if not (isinstance(accuracies, list) and isinstance(cs, list) and len(accuracies) == len(cs) == len(models)):
        fail(f"expected one accuracy and one c per model: {len(models)} models, accuracies {args.accuracies}, cs {args.cs}")

    sweep = []
    for (index, path), accuracy, c in zip(models, accuracies, cs):
        if os.path.isdir(path):
            path = os.path.join(path, "model")
        with open(path, "rb") as f:
            model = pickle.load(f)
        if float(model["params"]["c"]) != float(c):
            fail(f"item {index}: the model was trained with c={model['params']['c']}, its result says c={c}")
        sweep.append({"index": index, "c": float(c), "accuracy": float(accuracy), "path": path})
    best = max(sweep, key=lambda s: (s["accuracy"], -s["c"]))
    shutil.copyfile(best["path"], output_path("model"))

    table = [{k: s[k] for k in ("index", "c", "accuracy")} for s in sweep]
    write_json("sweep", {"items": table, "best": {k: best[k] for k in ("index", "c", "accuracy")}})
    write_result("best_c", best["c"])
    write_result("best_accuracy", best["accuracy"])
    write_result("best_index", best["index"])
    write_result("sweep", fitting(table))
    for s in table:
        log(f"item {s['index']}: c={s['c']:<8g} accuracy {s['accuracy']:.4f}{'  <- picked' if s['index'] == best['index'] else ''}")
    write_metrics({"best_c": best["c"], "best_accuracy": best["accuracy"], "items": len(table)})


def fitting(table):
    """The table, or as many of its best entries as fit in a result (kept in item order)."""
    kept = sorted(table, key=lambda s: (-s["accuracy"], s["c"]))
    while len(json.dumps(kept, separators=(",", ":"))) > RESULT_MAX_BYTES - 64:
        kept.pop()
    return sorted(kept, key=lambda s: s["index"])


if __name__ == "__main__":
    main()
