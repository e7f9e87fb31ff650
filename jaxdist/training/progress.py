"""Progress of a run: a tqdm bar (terminals and notebooks), one line per record (logs), or none."""

from __future__ import annotations

import time

import tqdm


def say(show: bool | str, message: str) -> None:
  """A message for the user, unless progress is off."""
  if show == "lines":
    print(message, flush=True)
  elif show:
    tqdm.tqdm.write(message)


FIELDS = (("train/loss", "loss", ".4f"), ("train/accuracy", "acc", ".3f"),
          ("test/accuracy", "test acc", ".3f"), ("perf/examples_per_second", "ex/s", ",.0f"))


def line(step: int, total: int, record: dict, eta: float) -> str:
  """`step 150/300 ( 50%) | loss 0.4821 | acc 0.861 | test acc 0.842 | 91,234 ex/s | ETA ...`."""
  parts = [f"step {step:>{len(str(total))}}/{total} ({100 * step / total:3.0f}%)"]
  for key, name, fmt in FIELDS:
    if record.get(key) is not None:
      parts.append(f"{name} {record[key]:{fmt}}" if name != "ex/s" else
                   f"{record[key]:{fmt}} ex/s")
  parts.append(f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
  return " | ".join(parts)


class Progress:
  """Shows the records of a run from `start` to `total` steps as `show` says."""

  def __init__(self, show: bool | str, start: int, total: int):
    self.show, self.total = show, total
    self.bar = None
    if show is True:
      self.bar = tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                           smoothing=0.3)

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    if self.bar is not None:
      self.bar.close()

  def update(self, step: int, record: dict, eta: float) -> None:
    if self.show == "lines":
      print(line(step, self.total, record, eta), flush=True)
    elif self.bar is not None:
      postfix = {name: format(record[key], fmt) for key, name, fmt in FIELDS
                 if record.get(key) is not None}
      self.bar.set_postfix(postfix, refresh=False)
      self.bar.update(step - self.bar.n)
      if "test/accuracy" in record:
        self.bar.write(line(step, self.total, record, eta))

  def say(self, message: str) -> None:
    if self.bar is not None:
      self.bar.write(message)
    else:
      say(self.show, message)
