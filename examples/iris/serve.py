"""serve: the iris model as an HTTP endpoint (FastAPI on uvicorn, from Debian's packages).

Ferry's serving contract (docs/serving.md): the model is at $FERRY_MODEL_PATH (default
/ferry/inputs/model), fetched and sha256-checked by Ferry's agent before this starts; the
ModelVersion is named by FERRY_MODEL_NAME, FERRY_MODEL_VERSION and FERRY_MODEL_DIGEST; listen
on 0.0.0.0:$PORT (default 8080); GET /healthz answers 200 once the model is loaded. A model
that cannot be loaded ends the process with exit code 1 and one line saying why, before it
listens: the rollout sees a server that crashes on start, not one that never gets ready.

  POST /predict  {"instances": [{"sepal_length_cm": 5.1, "sepal_width_cm": 3.5,
                                  "petal_length_cm": 1.4, "petal_width_cm": 0.2}, ...]}
              →  {"model": {"name", "version", "digest"},
                  "predictions": [{"species": "setosa", "probabilities": {"setosa": 0.97, ...}}]}
  GET /healthz   {"status": "ok", "model": {...}}
  GET /openapi.json, /docs   the self-describing API

`python3 serve.py --check` loads the model, prints what it is and exits.
"""
import json
import os
import pickle
import sys
from typing import Dict, List

from ferry_step import FEATURES

MAX_INSTANCES = 1000


def model_identity():
    return {
        "name": os.environ.get("FERRY_MODEL_NAME", "iris"),
        "version": int(os.environ.get("FERRY_MODEL_VERSION", "0") or 0),
        "digest": os.environ.get("FERRY_MODEL_DIGEST", ""),
    }


def load_model(path):
    """The pickle train.py writes, checked: an estimator with predict_proba over the four features."""
    try:
        with open(path, "rb") as f:
            model = pickle.load(f)
    except Exception as err:  # whatever the bytes are, say so and stop
        raise SystemExit(f"serve: cannot load the model at {path}: {type(err).__name__}: {err}")
    if not isinstance(model, dict) or not hasattr(model.get("estimator"), "predict_proba"):
        raise SystemExit(f"serve: {path} is not an iris model (a dict with an estimator that has predict_proba)")
    features = list(model.get("features") or FEATURES)
    if features != FEATURES:
        raise SystemExit(f"serve: {path} was trained on {features}, not {FEATURES}")
    return model


def create_app(model):
    # Imported here: `--check` needs neither.
    from fastapi import FastAPI
    from pydantic import BaseModel, Field, conlist

    identity = model_identity()
    classes = [str(c) for c in model["estimator"].classes_]

    class Flower(BaseModel):
        sepal_length_cm: float = Field(..., gt=0, description="Sepal length in centimetres.")
        sepal_width_cm: float = Field(..., gt=0, description="Sepal width in centimetres.")
        petal_length_cm: float = Field(..., gt=0, description="Petal length in centimetres.")
        petal_width_cm: float = Field(..., gt=0, description="Petal width in centimetres.")

    class PredictRequest(BaseModel):
        instances: conlist(Flower, min_items=1, max_items=MAX_INSTANCES) = Field(..., description="The flowers to classify.")

    class ModelInfo(BaseModel):
        name: str = Field(..., description="The registered model.")
        version: int = Field(..., description="Its version (the ModelVersion <name>-v<version>).")
        digest: str = Field(..., description="sha256 of the model artifact that answers.")

    class Prediction(BaseModel):
        species: str = Field(..., description="The most probable species.")
        probabilities: Dict[str, float] = Field(..., description="Probability of each species.")

    class PredictResponse(BaseModel):
        model: ModelInfo
        predictions: List[Prediction]

    class Health(BaseModel):
        status: str
        model: ModelInfo

    app = FastAPI(
        title="Ferry iris endpoint",
        version=f"{identity['name']}-v{identity['version']}",
        description="Classifies iris flowers with the registered model version Ferry serves here "
        "(scikit-learn logistic regression trained by the iris-train pipeline).",
    )

    @app.get("/healthz", response_model=Health, summary="Ready: the model is loaded")
    def healthz():
        return {"status": "ok", "model": identity}

    @app.post("/predict", response_model=PredictResponse, summary="Predict the species of flowers")
    def predict(request: PredictRequest):
        rows = [[getattr(flower, name) for name in FEATURES] for flower in request.instances]
        probabilities = model["estimator"].predict_proba(rows)
        predictions = []
        for row in probabilities:
            by_class = {c: round(float(p), 6) for c, p in zip(classes, row)}
            predictions.append({"species": max(by_class, key=by_class.get), "probabilities": by_class})
        return {"model": identity, "predictions": predictions}

    return app


def main():
    path = os.environ.get("FERRY_MODEL_PATH", "/ferry/inputs/model")
    model = load_model(path)
    summary = {"msg": "model loaded", "path": path, **model_identity(), "params": model.get("params"), "sklearn_version": model.get("sklearn_version")}
    if "--check" in sys.argv[1:]:
        print(json.dumps(summary))
        return
    import uvicorn

    port = int(os.environ.get("PORT", "8080"))
    print(json.dumps({**summary, "port": port}), flush=True)
    # No access log: one line per request is noise; uvicorn finishes requests in flight on SIGTERM.
    uvicorn.run(create_app(model), host="0.0.0.0", port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
