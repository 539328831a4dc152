"""``python -m densenet.demo train|evaluate``: make the bundled demo model, then measure it.

    python -m densenet.demo train              # ~25 min on 2 cores; writes assets/demo/
    python -m densenet.demo train --smoke --out /tmp/x.safetensors   # two tiny steps
    python -m densenet.demo evaluate           # 1,000 held-out images; rewrites MODEL_CARD.md, stamps the weights
    python -m densenet.demo samples            # re-creates assets/samples/
    python -m densenet.demo dataset --out DIR --n 200   # images, labels, boxes, masks for an audit

glibc's allocator and OpenMP read their settings from the environment when the process starts,
so when they are missing this module re-executes itself once with them set.
"""

from __future__ import annotations

import argparse
import os
import sys

# Without the MALLOC_ settings glibc hands freed tensor memory back to the kernel after every
# step and takes it back page by page: measured 1.4x slower training (30 -> 22 ms per image).
# OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep instead of spinning at barriers; on a busy
# machine the spinning starves the other thread (measured 63-155 vs 8-30 ms per 64 px image).
RUN_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "1000000000",
    "MALLOC_TRIM_THRESHOLD_": "1000000000",
    "MALLOC_TOP_PAD_": "268435456",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _reexec_with_run_env() -> None:
    """Replace this process by itself with :data:`RUN_ENV` set, unless it already is."""
    missing = {k: v for k, v in RUN_ENV.items() if k not in os.environ}
    if not missing:
        return
    env = {**os.environ, **missing}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "densenet.demo", *sys.argv[1:]], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densenet.demo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the demo model on generated images (fixed recipe)")
    tr.add_argument("--smoke", action="store_true", help="two tiny steps, to check that training runs")
    tr.add_argument("--out", default=None, help="weights path (default: assets/demo/densenet_demo.safetensors)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    sa = sub.add_parser("samples", help="re-create assets/samples/ (generated and bundled images)")
    sa.add_argument("--dest", default=None, help="folder (default: assets/samples)")
    ds = sub.add_parser("dataset", help="write generated images with labels, boxes (plain and NIH) and masks")
    ds.add_argument("--out", required=True, help="folder to write")
    ds.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ds.add_argument("--seed", type=int, default=None, help="generator seed (default: the dataset seed)")
    ds.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ev = sub.add_parser("evaluate", help="accuracy, Grad-CAM pointing game and sanity check on held-out images")
    ev.add_argument("--weights", default=None, help="checkpoint to evaluate (default: the shipped one)")
    ev.add_argument("-n", type=int, default=1000, help="held-out images (default 1000)")
    ev.add_argument("--sanity-images", type=int, default=100, help="lesion images per layer for the sanity check")
    ev.add_argument("--card", default=None, help="model card to write (default: assets/demo/MODEL_CARD.md)")
    ev.add_argument("--no-card", action="store_true",
                    help="print the figures only (default: write the model card and record the best layer in the weights)")
    args = parser.parse_args(argv)

    if args.command == "samples":
        from densenet.demo import SAMPLES_DIR, write_samples

        for path in write_samples(args.dest or SAMPLES_DIR):
            print(path)
        return 0

    if args.command == "dataset":
        from densenet.synthetic import DATASET_SEED, write_dataset

        if args.n < 1:
            parser.error(f"--n must be at least 1, got {args.n}")
        try:
            paths = write_dataset(args.out, args.n, seed=DATASET_SEED if args.seed is None else args.seed,
                                  size=args.size)
        except (ValueError, OSError) as e:
            parser.exit(2, f"error: {e}\n")
        print(f"wrote {args.n} images to {paths['images']}, {paths['labels'].name}, {paths['boxes'].name}, "
              f"{paths['nih_boxes'].name} and {paths['masks']}")
        return 0

    from densenet.demo import evaluate as ev_mod
    from densenet.demo import train as tr_mod

    if args.command == "train":
        recipe = tr_mod.SMOKE if args.smoke else tr_mod.Recipe()
        out = args.out or tr_mod.WEIGHTS_PATH
        summary = tr_mod.train(recipe, out, progress=not args.no_progress)
        summary["command"] = "python -m densenet.demo train" + (" --smoke" if args.smoke else "")
        log = tr_mod.log_path_for(out)
        tr_mod.write_log(summary, log)
        print(f"wrote {out} and {log}: {summary['seconds']:.0f} s, {summary['images_seen']} images, "
              f"running accuracy {summary['final_running_accuracy']:.3f}")
        return 0

    weights = args.weights or tr_mod.WEIGHTS_PATH
    report = ev_mod.evaluate(weights, n=args.n, sanity_images=args.sanity_images)
    print(ev_mod.format_report(report))
    if not args.no_card:
        card = args.card or tr_mod.ASSET_DIR / "MODEL_CARD.md"
        ev_mod.write_model_card(report, card, train_log=tr_mod.log_path_for(weights))
        ev_mod.stamp_checkpoint(weights, report)
        print(f"wrote {card}; recorded cam_layer={report['best_layer']} in {weights}")
        # After the stamp, which writes the metadata afresh: the calibration goes into it.
        print(f"recorded the out-of-distribution calibration in {ev_mod.refresh_ood_calibration(weights)}")
    return 0


if __name__ == "__main__":
    _reexec_with_run_env()
    sys.exit(main())
