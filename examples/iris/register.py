"""register: the model the sweep picked, judged on the held-out test split and registered.

Runs only when the pick's cross-validated accuracy reaches parameter min-accuracy (the step's
`when`). Inputs `model` (from pick) and `test` (from prepare, never seen by the sweep).
Outputs `evaluation` (JSON: accuracy, macro F1, per-species precision/recall/F1, confusion
matrix) and `model` again, unchanged, registered as model `iris`: Ferry gives a registered
ModelVersion the metrics of the step that writes the registered output, so the step that
measured the model on held-out data is the one that registers it, and the promotion policy
judges that held-out accuracy. The copy has the picked model's digest. `--cv-accuracy
$(steps.pick.results.best_accuracy)`, when given, is recorded beside it as `cv_accuracy`.
"""
import argparse
import pickle
import shutil

from ferry_step import input_path, log, output_path, read_dataset, write_json, write_metrics, fail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cv-accuracy", type=float, help="the cross-validated accuracy the sweep measured")
    cv_accuracy = parser.parse_args().cv_accuracy

    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    with open(input_path("model"), "rb") as f:
        model = pickle.load(f)
    X, y = read_dataset(input_path("test"))
    if y is None:
        fail("the test input has no species column")
    classes = model["classes"]
    predicted = model["estimator"].predict(X)

    accuracy = float(accuracy_score(y, predicted))
    f1_macro = float(f1_score(y, predicted, average="macro", labels=classes, zero_division=0))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=classes, zero_division=0)
    matrix = confusion_matrix(y, predicted, labels=classes)
    write_json("evaluation", {
        "accuracy": round(accuracy, 6),
        "f1_macro": round(f1_macro, 6),
        "test_rows": int(len(y)),
        "params": model["params"],
        "per_class": {
            k: {"precision": round(float(p), 6), "recall": round(float(r), 6), "f1": round(float(s), 6), "support": int(n)}
            for k, p, r, s, n in zip(classes, precision, recall, f1, support)
        },
        # rows: true species, columns: predicted species, both in the order of "classes"
        "confusion_matrix": {"classes": classes, "rows": matrix.tolist()},
    })
    shutil.copyfile(input_path("model"), output_path("model"))
    log(f"accuracy {accuracy:.4f}, macro F1 {f1_macro:.4f} on {len(y)} held-out flowers (c={model['params']['c']})")
    metrics = {"accuracy": accuracy, "f1_macro": f1_macro, "test_rows": len(y), "c": float(model["params"]["c"])}
    if cv_accuracy is not None:
        metrics["cv_accuracy"] = cv_accuracy
    write_metrics(metrics)


if __name__ == "__main__":
    main()
