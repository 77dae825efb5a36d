#!/usr/bin/env python
"""Label a stream of numbers from stdin, one label per line: an example of the library to copy.

    online-em demo | python scripts/label_stream.py | head
    tail -f app.log | awk '{print $5}' | python scripts/label_stream.py

Each line is first labelled with the most probable component, then learned, so the model follows
the stream. A line that is not a finite number gives NA (and a warning on stderr), so the output
stays aligned with the input. The `online-em label` command does the same with more options.
"""

import math
import os
import sys

from online_em import OnlineGaussianMixture


def main() -> None:
    model = OnlineGaussianMixture(n_components=2, seed=42)
    for number, line in enumerate(sys.stdin, 1):
        try:
            value = float(line)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            label = model.learn_predict_one({0: value})  # predict, then learn
        else:
            print(f"line {number}: not a number: {line.strip()!r}", file=sys.stderr)
            label = "NA"
        print(label, flush=True)  # flush: a live pipe sees each label at once


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        sys.exit(130)
