"""The ``vectorstore`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from vectorstore.errors import VectorStoreError

__all__ = ["main"]

DEMO_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
]


def _cmd_demo(args: argparse.Namespace) -> int:
    from vectorstore import SentenceTransformer

    model = SentenceTransformer(args.model)
    emb = np.asarray(model.encode(DEMO_SENTENCES))
    sim = model.similarity(emb, emb).numpy()
    print(f"model: {model.model_name} ({model.model_source}: {model.model_path}), dim {emb.shape[1]}")
    print(f"similarity ({model.similarity_fn_name}):")
    width = max(len(s) for s in DEMO_SENTENCES)
    print(" " * (width + 2) + " ".join(f"{i:>5d}" for i in range(len(DEMO_SENTENCES))))
    for i, (sentence, row) in enumerate(zip(DEMO_SENTENCES, sim)):
        print(f"{sentence:<{width}} {i:d} " + " ".join(f"{v:5.2f}" for v in row))
    print("\nmost similar pairs:")
    pairs = sorted(
        ((float(sim[i, j]), i, j) for i in range(len(sim)) for j in range(i + 1, len(sim))), reverse=True
    )
    for score, i, j in pairs[:3]:
        print(f"  {score:.3f}  {DEMO_SENTENCES[i]!r} <-> {DEMO_SENTENCES[j]!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="vectorstore", description="Embedded vector search database.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="encode sample sentences with the bundled model and show similarities")
    demo.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or folder")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorstore`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except VectorStoreError as exc:
        print(f"vectorstore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vectorstore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
