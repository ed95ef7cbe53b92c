"""summary: the run's summary, a finally step (it runs after the main steps, however they ended).

Reads how the main steps ended from FERRY_RUN_STATUS (Succeeded, Failed or Cancelled) and
FERRY_FAILED_STEPS (comma-separated), the sweep's outcome from `--best-c`, `--best-accuracy`
and `--sweep` ($(steps.pick.results.…)) and parameter min-accuracy. Output `summary` (JSON):
the status, the failed steps, the sweep, the best c and its accuracy, and whether it reached
min-accuracy (so the register step ran). It names no run: Ferry may reuse it for an identical
run from the step cache, whose status and sweep are the same. NOTE: Ferry skips a finally step
whose upstream results do not exist, so when pick did not succeed there is no summary; the
run's status still says why.
"""
import argparse
import os

from ferry_step import json_argument, log, parameter, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--best-c", type=float, required=True)
    parser.add_argument("--best-accuracy", type=float, required=True)
    parser.add_argument("--sweep", default="[]", help="JSON list of {index, c, accuracy}")
    args = parser.parse_args()
    status = os.environ.get("FERRY_RUN_STATUS", "Unknown")
    failed = [s for s in os.environ.get("FERRY_FAILED_STEPS", "").split(",") if s]
    min_accuracy = parameter("min-accuracy", float, 0.0)
    sweep = json_argument(args.sweep, "--sweep")

    write_json("summary", {
        "status": status,
        "failed_steps": failed,
        "sweep": sweep,
        "best": {"c": args.best_c, "cv_accuracy": args.best_accuracy},
        "min_accuracy": min_accuracy,
        "good_enough_to_register": args.best_accuracy >= min_accuracy,
    })
    verdict = "registered" if args.best_accuracy >= min_accuracy and status == "Succeeded" else "not registered"
    log(f"run {status}{' (failed: ' + ', '.join(failed) + ')' if failed else ''}: best c={args.best_c:g} "
        f"with cross-validated accuracy {args.best_accuracy:.4f} over {len(sweep)} values of c; {verdict} (min-accuracy {min_accuracy:g})")


if __name__ == "__main__":
    main()
