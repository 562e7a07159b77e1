"""`vlbridge`: run the book, inspect its parameters, export the microworld."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  vlbridge list                                   chapters and profiles
  vlbridge run all --profile default              the whole book into results/default/
  vlbridge run 02 --profile smoke --set seed=1    one chapter, one parameter changed (into results/scratch/)
  vlbridge params backbones --profile default     the merged parameters a run would get
  vlbridge train fromage -p smoke --nproc 2       train one model on 2 processes, into the store (train --help)
  vlbridge export coco --out /tmp/mw --count 100  microworld scenes as COCO captions + PNGs
  vlbridge readme                                 copy the scoreboard and the profiles' fidelity tables into README.md
  vlbridge seeds                                  chapters 3-5 with seeds 0, 1, 2: results/seeds/summary.md

Parameters merge in this order: the chapter's parameters cell < the profile's `common:` section
< the profile's chapter section < --set key=value. Unknown keys and wrong types are errors."""


def _natural(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlbridge", description="A reproducible research book on teaching a frozen language model to see.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="execute chapters into results/<profile>/",
                         description="Execute chapters (book/NN_slug.py) with papermill and write "
                                     "results/<profile>/NN_slug.ipynb and NN_slug/{metrics.json,run.json,figures/}. "
                                     "A failed run leaves the previous results untouched.")
    run.add_argument("chapters", nargs="+", metavar="CHAPTER",
                     help="'all', or chapters by number or name: 02, backbones, 02_backbones")
    run.add_argument("--profile", "-p", default="default",
                     help="a profile name, params/<name>.yaml (default: default), or a custom profile's file path "
                          "(my.yaml: results go under results/my/)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter (value read as YAML); repeatable")
    run.add_argument("--out", type=Path, default=None, help="results root instead of <repo>/results")
    run.add_argument("--publish", action="store_true",
                     help="with --set: write into results/<profile>/ anyway (default: results/scratch/<profile>/, "
                          "so an experiment does not replace the published book)")
    progress = run.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show per-cell progress (default: only at a terminal, never under CI)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    params = sub.add_parser("params", help="print the merged parameters of a chapter",
                            description="Print the parameters a run of CHAPTER under PROFILE would get, as YAML.")
    params.add_argument("chapter", metavar="CHAPTER")
    params.add_argument("--profile", "-p", default="default")
    params.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("train", help="train one model on 1..N processes (torchrun) into the store; see train --help",
                   add_help=False)
    sub.add_parser("list", help="list chapters and profiles")
    sub.add_parser("readme", help="copy the default scoreboard and the fidelity tables into README.md",
                   description="Copy results/default/scoreboard.md (written by chapter 6) into README.md, "
                               "between its scoreboard markers, and each paper profile's fidelity table (the "
                               "'# |' lines of the header comment of params/paper-*.yaml) between its fidelity "
                               "markers; tests keep each block equal to its source.")

    from .seeds import SEED_CHAPTERS, SEEDS

    seeds = sub.add_parser("seeds", help="run the training chapters with several seeds and summarise",
                           description=f"Run chapters {', '.join(SEED_CHAPTERS)} once per seed (into a scratch "
                                       "folder; the published results are not touched), keep each run's metrics.json "
                                       "and run.json under results/seeds/seed-S/, and write results/seeds/summary.md "
                                       "and summary.json: every metric per seed, its mean, standard deviation and "
                                       "range. Chapter 6 shows the summary. On the default profile it takes about "
                                       "10 minutes a seed on 2 CPU cores.")
    seeds.add_argument("--seeds", type=_natural(0), nargs="+", default=list(SEEDS),
                       help=f"the seeds (default: {' '.join(map(str, SEEDS))}; at least two)")
    seeds.add_argument("--profile", "-p", default="default")
    seeds.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")

    from ..world.export import EXPORT_FORMATS

    export = sub.add_parser("export", help="write microworld scenes in a standard dataset format",
                            description="Write microworld scenes with seeds [start, start+count) as "
                                        f"{', '.join(EXPORT_FORMATS)} (or all), readable by vlbridge.data loaders.")
    export.add_argument("format", choices=[*EXPORT_FORMATS, "all"])
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument("--start", type=_natural(0), default=1_000_000,
                        help="first scene seed (default: the held-out range)")
    export.add_argument("--count", type=_natural(1), default=100, help="number of scenes (default 100)")
    export.add_argument("--image-size", type=_natural(8), default=32, help="image side in pixels (default 32)")
    return parser


def _run(args) -> int:
    from .runner import run_chapters

    paths = run_chapters(args.chapters, args.profile, args.overrides, args.out, args.progress, args.publish)
    for path in paths:
        print(f"wrote {path}")
    if args.overrides and not (args.out or args.publish):
        print("(a run with --set goes to results/scratch/, not over the published results; --publish puts it there)")
    return 0


def _params(args) -> int:
    import yaml

    from .config import merged_parameters, resolve_chapter

    values = merged_parameters(resolve_chapter(args.chapter), args.profile, args.overrides)
    sys.stdout.write(yaml.safe_dump(values, sort_keys=False))
    return 0


def _list(args) -> int:
    from .config import chapters, load_profile, profiles

    print("chapters:")
    for chapter in chapters():
        print(f"  {chapter}")
    print("profiles:")
    for profile in profiles():
        print(f"  {profile:16s} {load_profile(profile).get('description', '')}")
    return 0


def _readme(args) -> int:
    from .readme import update_readme

    print(f"updated {update_readme()}")
    return 0


def _seeds(args) -> int:
    from .config import ConfigError
    from .seeds import run_study

    if len(set(args.seeds)) < 2:
        raise ConfigError(f"--seeds: a seed study needs at least two different seeds, got {args.seeds}")
    print(f"wrote {run_study(sorted(set(args.seeds)), args.profile, show_progress=args.progress)}")
    return 0


def _export(args) -> int:
    from ..world.export import EXPORT_FORMATS, export

    for fmt in EXPORT_FORMATS if args.format == "all" else [args.format]:
        written = export(fmt, args.out / fmt if args.format == "all" else args.out,
                         args.start, args.count, image_size=args.image_size)
        print(f"{fmt}: wrote {len(written)} files under {args.out}")
    return 0


def main(argv=None) -> int:
    from ..backbones.lm import BackboneNotFoundError
    from ..data import DataError
    from ..paths import ProjectNotFoundError
    from .config import ConfigError
    from .readme import ReadmeError
    from .runner import RunError

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # its own parser (book/train.py), shared with `torchrun -m vlbridge.train`
        from .train import main as train_main

        handler, args = train_main, argv[1:]
    else:
        args = _parser().parse_args(argv)
        handler = {"run": _run, "params": _params, "list": _list, "export": _export, "readme": _readme,
                   "seeds": _seeds}[args.command]
    try:
        return handler(args)
    except (ConfigError, ProjectNotFoundError, DataError, BackboneNotFoundError, ReadmeError) as e:
        print(f"vlbridge: error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"vlbridge: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a folder that is a file, a read-only place, a full disk: say which, in one line
        where = f"{e.filename} -> {e.filename2}" if e.filename2 else e.filename  # a rename: the target may be it
        print(f"vlbridge: error: {e.strerror or e}: {where}" if e.filename else f"vlbridge: error: {e}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
