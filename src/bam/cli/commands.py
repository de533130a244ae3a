"""Commands for what comes after training: predict, submit, export, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from bam.cli.options import add_common, add_model, add_precision, at_least_one, say_precision


def cmd_predict(args: argparse.Namespace) -> None:
    from bam.inference.predict import Predictor, predict_file

    at_least_one("--batch-size", args.batch_size)
    predictor = Predictor.load(args.model, precision=args.precision)
    rows = predict_file(
        args.model,
        args.task,
        args.input,
        args.output,
        input_format=args.format,
        text_columns=args.text_column,
        batch_size=args.batch_size,
        predictor=predictor,
        progress=not args.quiet,
    )
    if args.output and args.output != "-" and not args.quiet:
        print(f"{rows} predictions written to {args.output}")
    say_precision(predictor.precision, args.quiet)


def cmd_submit(args: argparse.Namespace) -> None:
    from bam.inference.predict import Predictor
    from bam.inference.submit import write_submission

    predictor = Predictor.load(args.model, precision=args.precision)
    outcome = write_submission(args.model, args.out, args.data_dir, predictor=predictor)
    print(f"{args.out}: {len(outcome['written'])} files: {', '.join(outcome['written'])}")
    for missing in outcome["missing"]:
        print(f"  missing {missing['file']}: {missing['reason']}")
    say_precision(predictor.precision, args.quiet)


EXPORT_LOADS = {
    "transformers": "loads with transformers.pipeline('text-classification', model={path!r})",
    "onnx": "an ONNX graph for onnxruntime (heads: {heads}); README.md shows how to serve it",
    "bam": "loads with `bam predict --model {path}` and bam.Predictor.load({path!r}) (heads: {heads})",
}


def cmd_export(args: argparse.Namespace) -> None:
    from bam.errors import BamError
    from bam.inference.export import export_model

    if args.private and not args.push_to_hub:
        raise BamError("--private goes with --push-to-hub")
    done = export_model(
        args.model,
        args.task,
        args.out,
        format=args.format,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
    )
    loads = EXPORT_LOADS[done.format].format(path=str(done.path), heads=", ".join(done.heads))
    print(f"{done.path}: {loads}")
    if done.reason and args.format == "auto" and not args.quiet:
        print(f"  ONNX, not a transformers folder: {done.reason}")
    if args.push_to_hub:
        from bam.inference.hub import push_to_hub

        print(f"published: {push_to_hub(done.path, args.push_to_hub, private=args.private)}")


def cmd_report(args: argparse.Namespace) -> None:
    from bam.errors import BamError
    from bam.report.tables import compare_runs, read_results, write_report

    folders = [Path(d) for d in args.runs]
    if args.methods and not args.merge_into:
        raise BamError("--methods goes with --merge-into")
    if args.merge_into:
        from bam.experiment.merge import merge_runs

        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        merged = merge_runs(folders, Path(args.merge_into), methods)
        write_report(Path(args.merge_into), merged)
        print(f"report: {Path(args.merge_into) / 'report.md'} (seeds {merged['details']['seeds']})")
        folders = [Path(args.merge_into)]
    elif len(folders) == 1 and not args.compare_only and (folders[0] / "results.json").is_file():
        results = read_results(folders[0] / "results.json", whole_run=True)
        print(f"report: {write_report(folders[0], results)}")
    print(compare_runs(folders))


PREDICT_EPILOG = """\
output, one JSON object per input row:
  --task rte        {"id": "7", "label": "entailment", "probabilities": {"entailment": 0.9, ...}}
  --task stsb       {"id": "7", "score": 3.2}
  --task all        {"id": "7", "rte": {"label": ..., "probabilities": {...}}, "stsb": {"score": 3.2}}
  --task rte,stsb   the same, with those heads only
--task all (or a list) runs the encoder once per batch for every head. One pass reads one input,
so its heads must all take pairs or all single texts (a model with both: --task rte,stsb, then
--task cola). Texts come from --text-column if given, else the first of the heads' own columns
(e.g. sentence1, sentence2) the first row has, else text, or text_a and text_b. The id is the
task's index column, else id, index or idx, else the row number. The input is read in chunks,
so memory does not grow with it; --output appears only once every row is answered (stdout too:
nothing is printed on an error)."""


def register_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="labels and probabilities for a TSV/CSV/JSONL file or stdin, as JSONL",
        description="Predict every row of a TSV/CSV/JSONL file (or stdin) with one head, or all of them.",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model(p)
    p.add_argument(
        "--task",
        required=True,
        help="which head: a task name (e.g. rte, ax), custom-task YAML, 'all', or heads joined by commas",
    )
    p.add_argument("--input", help="input file (default: standard input)")
    p.add_argument("--output", help="JSONL file to write (default: standard output)")
    p.add_argument("--format", choices=["tsv", "csv", "jsonl"], help="input format (needed for stdin)")
    p.add_argument("--text-column", action="append", help="input column(s) holding the text(s)")
    p.add_argument("--batch-size", type=int, default=64)
    add_precision(p)
    add_common(p)
    p.set_defaults(func=cmd_predict)


def register_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="GLUE leaderboard files (a zip) from a model's test predictions")
    add_model(p)
    p.add_argument("--out", required=True, help="zip file to write, e.g. glue.zip")
    p.add_argument("--data-dir", help="GLUE folder, or 'hub' (default: the vendored copy)")
    add_precision(p)
    add_common(p)
    p.set_defaults(func=cmd_submit)


def register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="a model for standard tools (transformers, ONNX) or every head, with a model card"
    )
    add_model(p)
    p.add_argument("--task", required=True, help="the task whose head to export, or 'all' for every head")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument(
        "--format",
        choices=["auto", "transformers", "onnx", "bam"],
        default="auto",
        help="auto (default): a transformers folder where transformers computes the head (pooling=cls), "
        "else ONNX for onnxruntime; with --task all, a bam model folder (bam predict, bam.Predictor)",
    )
    p.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this Hugging Face repo")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    p.add_argument("--overwrite", action="store_true", help="replace a folder that holds something")
    p.add_argument("--trust-remote-code", action="store_true")
    add_common(p)
    p.set_defaults(func=cmd_export)


def register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="rewrite a run's report and plots; compare runs side by side; merge seeds run apart"
    )
    p.add_argument("runs", nargs="+", help="run folders (each holding results.json)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--compare-only", action="store_true", help="print the table, write nothing")
    mode.add_argument(
        "--merge-into",
        metavar="DIR",
        help="one report over the seeds of all the runs (same configuration, seeds run apart)",
    )
    p.add_argument("--methods", help="with --merge-into: only these methods (comma-separated)")
    add_common(p)
    p.set_defaults(func=cmd_report)


def cmd_config(args: argparse.Namespace) -> None:
    from bam.config.docs import describe_keys, resolved_yaml
    from bam.config.run import load_run_config
    from bam.errors import BamError

    if args.preset is None:
        print(describe_keys())
        return
    if "=" in args.preset:
        raise BamError(f"{args.preset}: a key=value goes after a preset (bam config demo {args.preset})")
    config = load_run_config(args.preset, None, args.overrides)
    print(resolved_yaml(config, args.preset, args.overrides), end="")


def register_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config", help="every config key with its type, default and meaning; a preset as YAML to edit"
    )
    p.add_argument(
        "preset",
        nargs="?",
        help="a built-in preset (e.g. demo): printed with every value as commented YAML, to edit and "
        "use with bam run --config FILE (bam config demo > my_run.yaml)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="changes to the preset: seeds=[1,2,3]")
    add_common(p)
    p.set_defaults(func=cmd_config)


COMMANDS = [register_predict, register_submit, register_export, register_report, register_config]
