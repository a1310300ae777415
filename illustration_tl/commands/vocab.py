"""``illustration-tl vocab --query=harp``: the ImageNet-1k classes, offline."""

from absl import flags

from illustration_tl.commands import app
from illustration_tl.datasets import imagenet

_QUERY = flags.DEFINE_string("query", None, "Text to find in any synonym, or a wnid. "
                             "Empty lists all 1000 classes.")


def main(argv) -> int:
    found = imagenet.search(_QUERY.value or "")
    for c in found:
        print(f"{c.index:4d}  {c.wnid}  {', '.join(c.names)}")
    if not found:
        print(f"no ImageNet class matches {_QUERY.value!r}")
        return 1
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
