"""Options that mean the same thing in every command, defined once: same flag, type, metavar and help.

Conventions: a model reference is ``REF`` (a zoo name, ``hf-hub:ORG/NAME[@REV]``, an artifact folder, or
for some commands a genotype); ``--threads`` is the number of CPU threads a command runs on (where a
command times several configurations it takes a comma-separated list and times each); ``--dataset`` and
``--data-dir`` name the images; ``--offline`` and ``--endpoint`` apply to every command that can fetch a
model from the Hub.

Nothing here imports torch: ``menas-zoo --help`` must start fast.
"""

from __future__ import annotations

from typing import Any

import typer

#: the names ``menas_zoo.data.load_dataset`` knows; a test keeps the two equal
DATASET_NAMES = ("fashion-mnist", "cifar10", "imagefolder")

REF_HELP = "Zoo name (mt-test), hf-hub:ORG/NAME[@REV], or an artifact folder."
GENOTYPE_HELP = "Reference name (mobilenetv3-small), genotype JSON file, inline JSON, or one-line genotype."
NETWORK_HELP = ("Zoo name (mt-test), hf-hub:ORG/NAME[@REV], artifact folder, or a genotype (reference name such as "
                "mobilenetv3-small, JSON file, inline JSON, one-line genotype).")


def device_option() -> Any:
    return typer.Option("auto", "--device", metavar="DEVICE",
                        help="auto (CUDA when present, with mixed precision), cpu, cuda, cuda:N.")


def dataset_option(purpose: str = "") -> Any:
    return typer.Option("fashion-mnist", "--dataset", metavar="NAME",
                        help=f"Dataset{' ' + purpose if purpose else ''}: {', '.join(DATASET_NAMES)}.")


def data_dir_option() -> Any:
    return typer.Option(None, "--data-dir", metavar="DIR",
                        help="Dataset folder (default for Fashion-MNIST: the Debian package's).")


def offline_option() -> Any:
    return typer.Option(False, "--offline", help="Never touch the network: use cached and bundled models only "
                                                 "(as HF_HUB_OFFLINE=1).")


def endpoint_option() -> Any:
    return typer.Option(None, "--endpoint", metavar="URL", help="Hub URL (default: HF_ENDPOINT, else huggingface.co).")


def threads_option(default: Any, *, several: bool, when_unset: str = "") -> Any:
    """``--threads``: one count (an int) or, in commands that time configurations, a comma-separated list."""
    if several:
        return typer.Option(default, "--threads", metavar="N[,N...]",
                            help="CPU (intra-op) thread counts, comma-separated: each is timed.")
    return typer.Option(default, "--threads", metavar="N", min=1,
                        help=f"CPU (intra-op) threads to run on{f' (default: {when_unset})' if when_unset else ''}.")


def providers_option() -> Any:
    return typer.Option(None, "--providers", metavar="NAME[,NAME...]",
                        help="ONNX Runtime execution providers in order of preference, comma-separated "
                             "(e.g. cuda,cpu; default: cpu).")


def json_option(what: str = "instead of a table") -> Any:
    return typer.Option(False, "--json", help=f"Print JSON {what}.")


def hub_offline(offline: bool) -> bool | None:
    """``--offline`` -> the ``offline`` argument of the resolver: ``None`` lets HF_HUB_OFFLINE decide."""
    return True if offline else None
