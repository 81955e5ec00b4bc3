"""Write the built-in synthetic speaker corpus (src/demo_corpus.py) and print its summary.

    python scripts/make_demo_corpus.py --out_dir demo/data [--seed 0 ...]

The folder gets train.txt, eval.txt (veri_test2 format), train/wav and eval/wav in the
VoxCeleb layout; the same options give byte-identical files. Exit status: 0, or 1 with
one "error:" line for a bad option, a setting out of range or a folder that already
holds a corpus (see --overwrite).
"""

from src.cli import ArgumentParser, run_main
from src.demo_corpus import format_summary, generate_demo_corpus


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", required=True, help="folder to create the corpus in")
    parser.add_argument("--num_train_speakers", type=int, default=40)
    parser.add_argument("--num_eval_speakers", type=int, default=10)
    parser.add_argument("--utterances_per_speaker", type=int, default=20,
                        help="utterances of each train speaker")
    parser.add_argument("--eval_utterances_per_speaker", type=int, default=10)
    parser.add_argument("--sessions_per_speaker", type=int, default=4)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a corpus already in --out_dir")
    return parser.parse_args(argv)


def main(argv=None):
    """Generate the corpus the command line ``argv`` describes and print its summary."""
    args = parse_args(argv)
    summary = generate_demo_corpus(
        args.out_dir, args.num_train_speakers, args.num_eval_speakers,
        args.utterances_per_speaker, args.seed, args.eval_utterances_per_speaker,
        args.sessions_per_speaker, args.min_seconds, args.max_seconds, args.overwrite)
    print(format_summary(summary, args.out_dir))


if __name__ == "__main__":
    run_main(main)
