"""The ``bam`` command: parses arguments, calls the library, turns known errors into one line.

Every :class:`BamError` ends as ``bam: error: <message>`` on stderr with exit status 2; no
traceback reaches the user for problems they can fix.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from bam.cli.commands import COMMANDS
from bam.cli.options import (
    OneLineParser,
    add_common,
    add_model,
    add_precision,
    at_least_one,
    say_precision,
)
from bam.config.docs import help_epilog
from bam.errors import BamError

log = logging.getLogger("bam")
# What a full, read-only or failing disk raises wherever a file is written: the user's to fix.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}
# How gloo and NCCL report a collective whose peer process died (or timed out waiting for one).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Timed out", "timeout")


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not args.verbose:
        # Environment variables, read when each library is imported, so that the processes
        # `bam run --jobs` spawns are as quiet as this one (no "Loading weights" bar per stage).
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


def cmd_train(args: argparse.Namespace) -> None:
    from bam.config.train import load_train_config
    from bam.cpu.machine import warn_if_cpus_busy
    from bam.fileio import claim_folder
    from bam.tasks import check_per_task_keys, get_task
    from bam.train.checkpoint import CONFIG_FILE
    from bam.train.loop import train

    base: dict = {}
    if args.task:
        base["tasks"] = args.task
    if args.model:
        base["model"] = args.model
    if args.data_dir:
        base["data_dir"] = args.data_dir
    if args.trust_remote_code:
        base["trust_remote_code"] = True
    config = load_train_config(args.config, args.overrides, base)
    # One model, its own tasks: a cap or pair order may only name one of them (unlike a stage of
    # bam run, which gets the whole run's), and is refused before the output folder is touched.
    check_per_task_keys(config, shared=[get_task(name).name for name in config.tasks])
    output = Path(args.output)
    claim_folder(
        output, args.overwrite, ours=(output / CONFIG_FILE).is_file(), what="bam output", replace_ours=True
    )
    first_rank = os.environ.get("RANK", "0") == "0"
    # train() resumes a killed run, returns a finished one, and refuses another run's folder.
    result = train(config, output, quiet=args.quiet, on_start=warn_if_cpus_busy if first_rank else None)
    if not first_rank:
        return  # one summary per run, not per process
    print(
        json.dumps(
            {
                "output": str(output),
                "dev": result.dev,
                "examples_per_second": round(result.examples_per_second, 1),
            },
            indent=2,
        )
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from bam.fileio import atomic_write_json
    from bam.inference.evaluate import evaluate, load_eval_splits, summarize
    from bam.model import load_bam_model, pad_id, resolve_model_dir
    from bam.precision import model_precision
    from bam.tasks import get_task

    if args.batch_size is not None:
        at_least_one("--batch-size", args.batch_size)
    model_dir = resolve_model_dir(args.model)
    model, tokenizer, meta = load_bam_model(model_dir, trust_remote_code=args.trust_remote_code)
    names = args.task or list(model.head_specs)
    tasks = [get_task(n) for n in names]
    missing = [task.name for task in tasks if task.head_name not in model.head_specs]
    if missing:
        raise BamError(f"{model_dir}: no head for task {missing[0]} (it has: {', '.join(model.head_specs)})")
    max_length = meta.get("train_config", {}).get("max_length", 128)
    # As training scored it (unless --precision says otherwise): the same precision and batches
    # give the same numbers.
    batch_size = args.batch_size or meta.get("train_config", {}).get("eval_batch_size", 128)
    precision = model_precision(meta, next(model.parameters()).device, args.precision)
    splits = load_eval_splits(tasks, args.data_dir, tokenizer, max_length)
    results = evaluate(model, splits, pad_id(tokenizer), batch_size, precision)
    report = {"model": str(model_dir), "metrics": results, **summarize(results, tasks)}
    out = Path(args.output) if args.output else model_dir.parent / "eval_results.json"
    atomic_write_json(out, report)
    print(json.dumps(report, indent=2))
    say_precision(precision, args.quiet)


def cmd_run(args: argparse.Namespace) -> None:
    from bam.config.run import load_run_config
    from bam.cpu.machine import warn_if_cpus_busy
    from bam.experiment.results import claim_run_folder
    from bam.experiment.stages import check_stage_name

    config = load_run_config(args.preset, args.config, args.overrides)
    at_least_one("--jobs", args.jobs)
    if args.jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BamError("--jobs trains stages in processes of its own: not under accelerate launch")
    name = args.preset or (Path(args.config).stem if args.config else "demo")
    if not args.output:
        check_stage_name(name, "run name")  # runs/<name> must stay under runs/
    output = Path(args.output or Path("runs") / name)
    if args.dry_run:
        from bam.experiment.plan import describe_plan, describe_progress

        if not args.overwrite:  # the refusal the run itself would meet (a file, a folder not ours)
            claim_run_folder(output, overwrite=False)

        print(describe_plan(config, args.jobs, calibrate=not args.no_calibrate))
        if (output / "stages").is_dir():  # a run begun: what it holds already
            print(f"\n{describe_progress(config, output)}")
        return
    from bam.experiment.run import run
    from bam.report.tables import format_table, results_labels, teacher_check, write_report

    results = run(
        config, output, quiet=args.quiet, overwrite=args.overwrite, jobs=args.jobs, on_start=warn_if_cpus_busy
    )
    write_report(output, results)
    print(format_table(results["methods"], markdown=False, labels=results_labels(results)))
    check = teacher_check(results, markdown=False)
    if check:
        print(f"\nteachers against the constant prediction (the score of ignoring the input):\n{check}")
    print(f"\nresults: {output / 'results.json'}\nreport:  {output / 'report.md'}")


def cmd_data_inspect(args: argparse.Namespace) -> None:
    from bam.data.inspect import format_inspect_table, inspect_data_dir

    report = inspect_data_dir(args.dir)
    if not report["tasks"]:  # most likely the wrong folder: not "nothing" with exit 0
        raise BamError(f"{args.dir}: no GLUE files found (the glue_data layout, e.g. RTE/train.tsv)")
    print(json.dumps(report, indent=2) if args.json else format_inspect_table(report))


def cmd_data_download(args: argparse.Namespace) -> None:
    from bam.data.download import download_glue

    written = download_glue(args.out, args.task or None)
    print("\n".join(str(p) for p in written))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(  # its subcommands' parsers are of the same class
        prog="bam",
        description="Born-Again Multi-task networks: train teachers, distil them into one multi-task "
        "student with teacher annealing, and compare Single vs Multi vs BAM.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="the whole comparison: teachers, Multi, BAM (default: the demo preset)",
        epilog=help_epilog("run"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", help="a built-in preset: demo (default), smoke, glue5-cpu, glue7-cpu, glue-paper"
    )
    p.add_argument("--config", help="a YAML run config (layered over the preset)")
    p.add_argument("--output", help="run folder (default runs/<preset>)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan, train nothing")
    p.add_argument(
        "--no-calibrate",
        action="store_true",
        help="--dry-run: skip timing a few training steps here, so no time estimate",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a folder that holds something else")
    p.add_argument(
        "--jobs", type=int, default=1, help="stages trained at once, in separate processes (default 1)"
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. student.epochs=2 seeds=[1,2,3]")
    add_common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "train",
        help="fine-tune one model on one or more tasks",
        epilog=help_epilog("train"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", action="append", help="GLUE task name or custom-task YAML (repeatable)")
    p.add_argument("--model", help="minilm-l6 (packaged), a hub id, or a local folder")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--data-dir", help="GLUE folder, or 'hub' (default: the vendored copy)")
    p.add_argument("--config", help="YAML file of training settings")
    p.add_argument("--trust-remote-code", action="store_true", help="allow code from the model's hub repo")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. learning_rate=3e-5 epochs=2")
    add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="dev-set metrics of a trained model, as JSON")
    add_model(p)
    p.add_argument("--task", action="append", help="tasks to evaluate (default: all of the model's)")
    p.add_argument("--data-dir", help="GLUE folder, or 'hub' (default: the vendored copy)")
    p.add_argument("--output", help="JSON file to write (default: eval_results.json beside the model)")
    p.add_argument(
        "--batch-size", type=int, help="rows per batch (default: the batch its training evaluated with)"
    )
    p.add_argument("--trust-remote-code", action="store_true")
    add_precision(p)
    add_common(p)
    p.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="inspect or download GLUE data").add_subparsers(
        dest="data_command", required=True, metavar="SUBCOMMAND"
    )
    p = data.add_parser("inspect", help="rows and label counts of every GLUE file in a folder")
    p.add_argument("dir", help="a folder in the official glue_data layout")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_common(p)
    p.set_defaults(func=cmd_data_inspect)
    p = data.add_parser("download", help="fetch the official GLUE files, verifying every checksum")
    p.add_argument("--out", required=True, help="destination folder")
    p.add_argument("--task", action="append", help="only these tasks (repeatable)")
    add_common(p)
    p.set_defaults(func=cmd_data_download)

    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may sit on both sides of an option (`bam run a=1 --dry-run b=2`); argparse only
    # takes one run of positionals, so the rest come back unknown and are appended in order.
    args, unknown = parser.parse_known_args(argv)
    if unknown and hasattr(args, "overrides") and all("=" in u and not u.startswith("-") for u in unknown):
        args.overrides += unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    _setup_logging(args)
    try:
        args.func(args)
    except BamError as err:
        print(f"bam: error: {err}", file=sys.stderr)
        return _finish(2)
    except OSError as err:
        if err.errno not in DISK_ERRORS:  # anything else is a bug: its traceback is wanted
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"bam: error: {where}{(err.strerror or str(err)).lower()}", file=sys.stderr)
        return _finish(2)
    except RuntimeError as err:
        reason = _peer_lost(err)
        if reason is None:
            raise
        print(
            f"bam: error: another process of this distributed run stopped ({reason}); "
            "start the run again to resume from its last checkpoint",
            file=sys.stderr,
        )
        return _abandon(2)
    except KeyboardInterrupt:
        print("bam: interrupted", file=sys.stderr)
        return _finish(130)
    return _finish(0)


def _peer_lost(err: RuntimeError) -> str | None:
    """What gloo or NCCL said when another process of the run died (None: some other error)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None
    text = str(err)
    for sign in PEER_LOST:
        if sign.lower() in text.lower():
            return sign
    return None


def _abandon(code: int) -> int:
    """Exit a process whose peers are gone: no barrier or teardown, which would wait for them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _finish(code: int) -> int:
    """End a multi-process run cleanly.

    With torch 2.13 and gloo, a process sometimes aborts at interpreter shutdown even after
    ``destroy_process_group()``; a barrier, the destroy, flushing and ``os._exit`` avoid it.
    """
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.barrier()
        distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
