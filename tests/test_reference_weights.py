"""The guard that a refactor changes no result: each demo, trained a few steps on the CPU
with its own config and seed, ends with generator weights bit-identical to the ones
recorded before the code was restructured (``tests/data/demo_weights.json``, written by
``python tools/demo_weights.py --steps 6 --json tests/data/demo_weights.json``).

Bit-identity holds for one torch build on one kind of CPU (the kernels torch picks depend
on both), so the check runs where the recorded environment matches and says why it does
not elsewhere. Re-record only for a change that is meant to change results, and say so in
the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORD = json.loads((REPO / "tests" / "data" / "demo_weights.json").read_text())
sys.path.insert(0, str(REPO / "tools"))

import demo_weights  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("reference_weights")


@pytest.mark.parametrize("kind", sorted(RECORD["hashes"]))
def test_demo_weights_are_bit_identical_to_the_record(kind, workdir):
    import torch

    here = demo_weights.environment()
    if here != RECORD["environment"]:
        pytest.skip(f"recorded on {RECORD['environment']}, this machine is {here}")
    assert torch.get_num_threads() == RECORD["threads"]
    digest = demo_weights.demo_hash(kind, RECORD["steps"], workdir)
    assert digest == RECORD["hashes"][kind], (
        f"demo {kind!r}: the weights after {RECORD['steps']} steps differ from the recorded ones"
    )
