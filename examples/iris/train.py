"""train: one point of the sweep, a logistic regression with one value of c.

Runs once per item of the pipeline's forEach over `cs`: the item (the value of c, inverse
regularisation strength: smaller is stronger, 0.01 underfits) comes as `--c $(item)`, or
FERRY_ITEM; outside a Pod, parameter c (default 1.0). Parameter max-iter: solver iterations.
Input `train` (CSV from prepare). The model is scored by stratified 5-fold cross-validation on
the train split, so choosing the best c never looks at the held-out test split (that is the
register step's job, on the one model chosen); then it is fitted on the whole train split.
Output `model`: a pickle of {"estimator", "features", "classes", "params", "sklearn_version"}.
Results: `accuracy` (the cross-validated accuracy, float) and `c` (float), which the pick step
reads for every item as JSON lists in item order.
"""
import argparse
import os
import pickle

from ferry_step import FEATURES, input_path, log, output_path, parameter, read_dataset, write_metrics, write_result, fail

FOLDS = 5


def chosen_c():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--c", help="the value of c (a forEach item)")
    text = parser.parse_args().c
    if text is None:
        text = os.environ.get("FERRY_ITEM")
    if text is None or text == "":
        return parameter("c", float, 1.0)
    try:
        return float(text)
    except ValueError:
        fail(f"c must be a number, got {text!r}")


def main():
    c = chosen_c()
    max_iter = parameter("max-iter", int, 200)
    if not c > 0:
        fail(f"c must be positive, got {c}")

    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = read_dataset(input_path("train"))
    if y is None:
        fail("the train input has no species column")
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    # Unshuffled folds: the train split is shuffled already, and the score stays reproducible.
    scores = cross_val_score(estimator, X, y, cv=StratifiedKFold(n_splits=FOLDS))
    accuracy = round(float(scores.mean()), 6)
    estimator.fit(X, y)
    iterations = int(estimator[-1].n_iter_.max())
    model = {
        "estimator": estimator,
        "features": FEATURES,
        "classes": [str(k) for k in estimator.classes_],
        "params": {"c": c, "max_iter": max_iter},
        "sklearn_version": sklearn.__version__,
    }
    with open(output_path("model"), "wb") as f:
        pickle.dump(model, f, protocol=4)
    write_result("accuracy", accuracy)
    write_result("c", c)
    train_accuracy = float(estimator.score(X, y))
    item = os.environ.get("FERRY_ITEM_INDEX")
    log(f"{'item ' + item + ': ' if item else ''}LogisticRegression(C={c}, max_iter={max_iter}): "
        f"{FOLDS}-fold cross-validated accuracy {accuracy:.4f} on {len(y)} rows, {iterations} iterations")
    write_metrics({"cv_accuracy": accuracy, "train_accuracy": train_accuracy, "iterations": iterations})


if __name__ == "__main__":
    main()
