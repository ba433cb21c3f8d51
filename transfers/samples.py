"""The samples behind a cast's rate chart, and the one rule that keeps them.

Each target keeps `[time, bytes received]` pairs (`Target.samples`): the time is when the
receiver measured the bytes (its `updated`, or its `finished` once done, in Unix seconds by
the receiver's clock), not when the report reached the server. The chart on the transfer page
plots, over time, the sum of the targets' receive rates, a target's rate between two of its
samples being the bytes that arrived between them over the time between them. Pairing bytes
with the time they were measured is what keeps the end of a cast from showing a spike: the
bytes a late report adds are spread over the time they took, however late the report is.

The server stores the samples as progress arrives and sends each target's latest one in its
`transfer.update` events; the page adds those to the samples it was served with, by the same
rule (`castray.js`, `addSample`), so a page that watched a cast and one loaded afterwards
draw the same chart.
"""

from __future__ import annotations

# Samples closer together than this are merged: the latest replaces the one before it.
SAMPLE_SECONDS = 0.5
# Beyond this, every other sample is dropped (the first and the latest stay): a long cast
# keeps a bounded row and a coarser chart.
MAX_SAMPLES = 400

Sample = list[float]  # [unix seconds, bytes]; a list because that is what JSON gives back


def add_sample(samples: list[Sample], when: float, value: int) -> bool:
    """Add `[when, value]` to `samples` in place; False if it is not newer than the last one.

    The latest sample is always kept; the others stay at least SAMPLE_SECONDS apart.
    """
    when = round(when, 3)
    if samples and when <= samples[-1][0]:
        return False
    if len(samples) >= 2 and samples[-1][0] - samples[-2][0] < SAMPLE_SECONDS:
        samples[-1] = [when, value]
    else:
        samples.append([when, value])
    if len(samples) > MAX_SAMPLES:
        samples[:] = [*samples[:-1:2], samples[-1]]
    return True
