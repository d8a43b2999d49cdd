"""``img2img summary``: the networks of a config, their classes and exact parameter counts."""

from __future__ import annotations

import argparse
import json

from torch import nn


def count_parameters(net: nn.Module) -> int:
    """Every parameter element of ``net`` (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in net.parameters())


def summary_table(nets: dict[str, nn.Module]) -> str:
    """A plain-text table: network, class, parameters (thousands separated), and a total."""
    rows = [(name, type(net).__name__, f"{count_parameters(net):,}") for name, net in nets.items()]
    total = sum(count_parameters(net) for net in nets.values())
    rows.append(("total", "", f"{total:,}"))
    header = ("network", "class", "parameters")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}"

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])


def cli_summary(args: argparse.Namespace) -> int:
    from img2img.tasks import build_networks

    nets = build_networks(args.cfg)
    if args.json:
        print(json.dumps({name: count_parameters(net) for name, net in nets.items()}))
    else:
        print(summary_table(nets))
    return 0
