"""predict: batch predictions with the registered model.

Input `model` (the iris ModelVersion the run pinned, e.g. {name: iris, stage: Production}).
Parameters: batch-size, seed, noise. The batch is self-contained: `batch-size` flowers drawn
(seeded) from scikit-learn's iris data, their measurements perturbed by Gaussian noise of
`noise` times each feature's standard deviation, as new field measurements would be; their
species stays known, so the report can say how well the model did. Outputs `predictions`
(CSV: measurements, predicted and true species) and `report` (JSON: the model's name,
version and digest from /ferry/config.json, counts per predicted species, accuracy).
"""
import csv
import hashlib
import json
import os
import pickle
from collections import Counter

from ferry_step import FEATURES, input_path, log, output_path, parameter, write_json, write_metrics, fail


def pinned_model():
    """The registered model this run was frozen with (name, version, artifact digest), if known."""
    path = os.environ.get("FERRY_CONFIG", "/ferry/config.json")
    try:
        with open(path, encoding="utf-8") as f:
            configuration = json.load(f)
    except (OSError, ValueError):
        return {}
    step = os.environ.get("FERRY_STEP", "predict")
    for entry in configuration.get("externalInputs", []):
        if entry.get("step") == step and entry.get("input") == "model":
            found = {"uri": entry.get("uri"), "digest": entry.get("digest")}
            found.update(entry.get("model") or {})
            return found
    return {}


def make_batch(size, seed, noise):
    import numpy as np
    from sklearn.datasets import load_iris

    iris = load_iris()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(iris.target), size=size, replace=size > len(iris.target))
    X = iris.data[rows] + rng.normal(0.0, 1.0, (size, len(FEATURES))) * noise * iris.data.std(axis=0)
    X = np.clip(np.round(X, 1), 0.1, None)
    return X, iris.target_names[iris.target[rows]]


def main():
    size = parameter("batch-size", int, 60)
    seed = parameter("seed", int, 7)
    noise = parameter("noise", float, 0.1)
    if size < 1 or noise < 0:
        fail(f"batch-size must be at least 1 and noise not negative (got {size}, {noise})")

    model_path = input_path("model")
    with open(model_path, "rb") as f:
        content = f.read()
    model = pickle.loads(content)
    X, truth = make_batch(size, seed, noise)
    predicted = model["estimator"].predict(X)

    with open(output_path("predictions"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(FEATURES + ["predicted_species", "true_species"])
        for row, p, t in zip(X, predicted, truth):
            writer.writerow([repr(float(v)) for v in row] + [str(p), str(t)])

    correct = int(sum(1 for p, t in zip(predicted, truth) if p == t))
    accuracy = correct / size
    counts = Counter(str(p) for p in predicted)
    pinned = pinned_model()
    write_json("report", {
        "model": {
            "name": pinned.get("name", "iris"),
            "version": pinned.get("version"),
            "artifact": {"uri": pinned.get("uri"), "digest": pinned.get("digest")},
            "file_sha256": "sha256:" + hashlib.sha256(content).hexdigest(),
            "params": model.get("params"),
            "sklearn_version": model.get("sklearn_version"),
        },
        "batch": {"size": size, "seed": seed, "noise": noise},
        "predictions": size,
        "per_class": {k: counts.get(k, 0) for k in model["classes"]},
        "correct": correct,
        "accuracy": round(accuracy, 6),
    })
    which = f"{pinned['name']}-v{pinned['version']}" if "version" in pinned else "the model"
    log(f"{which} predicted {size} flowers: {dict(sorted(counts.items()))}, {correct} right ({accuracy:.4f})")
    write_metrics({"predictions": size, "accuracy": accuracy})


if __name__ == "__main__":
    main()
