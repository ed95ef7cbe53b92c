"""train: a logistic regression fitted on the train split.

Parameters: c (inverse regularisation strength: smaller is stronger, 0.01 underfits),
max-iter (solver iterations). Input `train` (CSV from prepare). Output `model`: a pickle
of {"estimator", "features", "classes", "params", "sklearn_version"}. Training-set
numbers go to metrics.json; held-out numbers are evaluate's job.
"""
import pickle

from ferry_step import FEATURES, input_path, log, output_path, parameter, read_dataset, write_metrics, fail


def main():
    c = parameter("c", float, 1.0)
    max_iter = parameter("max-iter", int, 200)
    if c <= 0:
        fail(f"c must be positive, got {c}")

    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = read_dataset(input_path("train"))
    if y is None:
        fail("the train input has no species column")
    estimator = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
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
    train_accuracy = float(estimator.score(X, y))
    log(f"fitted LogisticRegression(C={c}, max_iter={max_iter}) on {len(y)} rows in {iterations} iterations")
    write_metrics({"train_accuracy": train_accuracy, "iterations": iterations})


if __name__ == "__main__":
    main()
