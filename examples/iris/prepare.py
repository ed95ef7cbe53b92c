"""prepare: the iris data set that scikit-learn ships, split into train and test.

Parameters: test-size (fraction held out, 0 < t < 1), seed (the shuffle). The split is
stratified, so each species keeps its share in both parts. Outputs: `train` and `test`
(CSV: four measurements in cm and the species name).
"""
from ferry_step import log, parameter, write_dataset, write_metrics, fail


def main():
    test_size = parameter("test-size", float, 0.3)
    seed = parameter("seed", int, 12)
    if not 0.0 < test_size < 1.0:
        fail(f"test-size must be between 0 and 1, got {test_size}")

    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    iris = load_iris()  # bundled with scikit-learn: no download
    species = iris.target_names[iris.target]
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data, species, test_size=test_size, random_state=seed, stratify=species
    )
    write_dataset("train", X_train, y_train)
    write_dataset("test", X_test, y_test)
    log(f"split {len(species)} flowers: {len(y_train)} to train, {len(y_test)} to test (test-size {test_size}, seed {seed})")
    write_metrics({"train_rows": len(y_train), "test_rows": len(y_test)})


if __name__ == "__main__":
    main()
