"""The Ferry step contract, as the iris example scripts use it.

A step reads its inputs from /ferry/inputs/<name>, writes its outputs to
/ferry/outputs/<name>, optional numbers to /ferry/outputs/metrics.json and its declared
results (small typed values later steps and `when` conditions read) as plain text to
/ferry/results/<name>; declared parameters arrive as FERRY_PARAM_<NAME> (upper case, "-" as
"_"). An input from a forEach step holds one entry per item: /ferry/inputs/<name>/<index>.
The directories can be moved with FERRY_INPUTS_DIR / FERRY_OUTPUTS_DIR / FERRY_RESULTS_DIR,
which is how the scripts run outside a Pod.
"""
import csv
import json
import math
import os
import sys

FEATURES = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
LABEL = "species"


def inputs_dir():
    return os.environ.get("FERRY_INPUTS_DIR", "/ferry/inputs")


def outputs_dir():
    return os.environ.get("FERRY_OUTPUTS_DIR", "/ferry/outputs")


def results_dir():
    return os.environ.get("FERRY_RESULTS_DIR", "/ferry/results")


def input_path(name):
    path = os.path.join(inputs_dir(), name)
    if not os.path.exists(path):
        fail(f"input {name!r} is missing: {path} does not exist")
    return path


def output_path(name):
    os.makedirs(outputs_dir(), exist_ok=True)
    return os.path.join(outputs_dir(), name)


def parameter(name, kind, default=None):
    """The value of pipeline parameter `name` (as FERRY_PARAM_<NAME>), converted by `kind`."""
    env = "FERRY_PARAM_" + name.upper().replace("-", "_")
    raw = os.environ.get(env)
    if raw is None or raw == "":
        if default is None:
            fail(f"parameter {name!r} is not set ({env}); list it in the step's parameters")
        return default
    try:
        return kind(raw)
    except ValueError:
        fail(f"parameter {name!r}: {raw!r} is not a valid {kind.__name__}")


def write_json(name, document):
    """Writes an output as sorted, indented JSON (the same content gives the same bytes)."""
    with open(output_path(name), "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=True)
        f.write("\n")


def write_result(name, value):
    """A declared result as the text Ferry checks against its type: a float as repr (full
    precision), a bool as true/false, a list or object as compact JSON, anything else as str."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        if not math.isfinite(value):
            fail(f"result {name!r} is {value}, which is not a finite number")
        text = repr(value)
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = str(value)
    os.makedirs(results_dir(), exist_ok=True)
    with open(os.path.join(results_dir(), name), "w", encoding="utf-8") as f:
        f.write(text)


def indexed_inputs(name):
    """[(index, path)] of an input from a forEach step, in item order: one entry per item that
    succeeded, at /ferry/inputs/<name>/<index> (a file, or a directory for a directory output)."""
    root = input_path(name)
    if not os.path.isdir(root):
        fail(f"input {name!r} is not a forEach step's output: {root} is not a directory")
    entries = [e for e in os.listdir(root) if e.isdigit()]
    if not entries:
        fail(f"input {name!r} holds no items ({root} is empty)")
    return [(int(e), os.path.join(root, e)) for e in sorted(entries, key=int)]


def json_argument(text, what):
    """A JSON value given on the command line, e.g. $(steps.train.results.accuracy)."""
    try:
        return json.loads(text)
    except ValueError:
        fail(f"{what}: {text!r} is not JSON")


def write_metrics(metrics):
    """metrics.json: a flat object of finite numbers, which Ferry records with the step."""
    clean = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        clean[key] = int(value) if isinstance(value, int) else round(float(value), 6)
    write_json("metrics.json", clean)
    log("metrics " + " ".join(f"{k}={v}" for k, v in sorted(clean.items())))


def write_dataset(name, X, y):
    """A CSV with the four measurements and the species name: readable, and byte-stable."""
    with open(output_path(name), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(FEATURES + [LABEL])
        for row, label in zip(X, y):
            writer.writerow([repr(round(float(v), 4)) for v in row] + [str(label)])


def read_dataset(path):
    """(X, y) from a CSV written by write_dataset; y is None when it has no species column."""
    import numpy as np

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        fail(f"{path} holds no rows")
    missing = [c for c in FEATURES if c not in rows[0]]
    if missing:
        fail(f"{path} lacks the columns {missing}")
    X = np.array([[float(r[c]) for c in FEATURES] for r in rows])
    y = np.array([r[LABEL] for r in rows]) if LABEL in rows[0] else None
    return X, y


def log(message):
    print(f"[{os.path.basename(sys.argv[0])}] {message}", flush=True)


def fail(message):
    # Printed last, so the step's termination message (FallbackToLogsOnError) shows it.
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
