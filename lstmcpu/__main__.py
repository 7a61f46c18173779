"""Command line: ``python -m lstmcpu {demo,bench,info}`` (also the ``lstmcpu`` script)."""

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(prog="lstmcpu", description="Fast LSTMs on the CPU.")
    commands = parser.add_subparsers(dest="command", required=True)

    from . import bench, demo, info

    demo_parser = commands.add_parser("demo", help="train and time LSTMs on generated data")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.main)

    bench_parser = commands.add_parser("bench", help="time every backend against PyTorch and ONNX Runtime")
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.main)

    info_parser = commands.add_parser("info", help="versions, backends, BLAS and CPU features")
    info_parser.set_defaults(run=info.main)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
