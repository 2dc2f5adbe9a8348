"""``SequenceSums``: the base of every registered metric whose scores are functions of sums
over sequences, which can keep each sequence's contributions for the bootstrap intervals of
``predlearn.score_intervals`` (issue 32)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["SequenceSums"]


class SequenceSums(Metric):
    """A metric whose states are sums over sequences (``sum_states``, in the order of a row of
    statistics) and whose scores are a pure function of them (``_curves_of``).

    Subclasses add the sum states, call ``_accumulate`` in ``update`` with each sequence's
    contributions and compute their curves with ``_curves_of`` (and ``_cases_of`` for the keys
    that rest on events); ``sequences_state`` names the state that counts the sequences.
    """

    #: the sum states, in the order of a row of ``sequence_statistics``
    sum_states: tuple[str, ...] = ()
    #: the sum state that counts the sequences scored
    sequences_state: str = ""
    #: one float64 (B, S) tensor per batch while ``record_sequences``; concatenated by DDP
    sequence_statistics: list[Tensor]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._record_sequences = False

    @property
    def record_sequences(self) -> bool:
        """Whether ``update`` also keeps each sequence's statistics (for the intervals); set
        it before the first update. The list state ``sequence_statistics`` (``cat`` across
        DDP ranks) is added when it is first set, so a metric that records nothing has only
        its sums."""
        return self._record_sequences

    @record_sequences.setter
    def record_sequences(self, value: bool) -> None:
        if value and "sequence_statistics" not in self._defaults:
            self.add_state("sequence_statistics", default=[], dist_reduce_fx="cat")
        self._record_sequences = bool(value)

    def _accumulate(self, contributions: dict[str, Tensor]) -> None:
        """Add each sequence's contributions (state name -> (B, *the state's shape), one for
        every sum state) to the sums, and keep them as rows with ``record_sequences``."""
        if set(contributions) != set(self.sum_states):
            raise ValueError(f"{type(self).__name__}: contributions to {sorted(contributions)}; "
                             f"its sums are {sorted(self.sum_states)}")
        for name in self.sum_states:
            state = getattr(self, name)
            state += contributions[name].sum(dim=0).to(state.dtype)  # in place: the state
        if self.record_sequences:
            batch = contributions[self.sequences_state].shape[0]
            self.sequence_statistics.append(torch.cat(
                [contributions[name].reshape(batch, -1).to(torch.float64)
                 for name in self.sum_states], dim=1))

    def state_sums(self) -> dict[str, Tensor]:
        """The sum states by name, as they are now (synced inside ``compute``)."""
        return {name: getattr(self, name) for name in self.sum_states}

    def totals(self) -> Tensor:
        """The sum states flattened into one float64 (S,) vector, in ``sum_states`` order."""
        return torch.cat([getattr(self, name).reshape(-1).to(torch.float64)
                          for name in self.sum_states])

    def unpack(self, totals: Tensor) -> dict[str, Tensor]:
        """Summed statistics (S,) -> the sum states by name, in their shapes."""
        shapes = [getattr(self, name).shape for name in self.sum_states]
        sizes = [math.prod(shape) for shape in shapes]
        if totals.shape != (sum(sizes),):
            raise ValueError(f"{type(self).__name__} keeps {sum(sizes)} sums; got "
                             f"{tuple(totals.shape)}")
        parts = torch.split(totals, sizes)
        return {name: part.reshape(shape)
                for name, part, shape in zip(self.sum_states, parts, shapes, strict=True)}

    def _curves_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """The logged curves (key -> (K,)) of the sums: the one formula of the scores."""
        raise NotImplementedError

    def _cases_of(self, sums: dict[str, Tensor]) -> dict[str, Tensor]:
        """The observed event pixels per step (key -> (K,)) of the keys that rest on events."""
        return {}

    def scores_of(self, totals: Tensor) -> dict[str, Tensor]:
        """The curves ``curves()`` returns (the same keys, (K,) each) of summed statistics
        (S,), e.g. the sum of some rows of ``sequence_statistics``."""
        return self._curves_of(self.unpack(totals))

    def cases_of(self, totals: Tensor) -> dict[str, Tensor]:
        """The number of observed event pixels per step (key -> (K,)) behind each key that
        rests on events, of summed statistics (S,); keys that do not are left out."""
        return self._cases_of(self.unpack(totals))

    def recorded(self) -> Tensor:
        """Every recorded sequence's statistics, float64 (N, S) on the CPU, concatenated over
        DDP ranks (every rank must call it). Refused if not every sequence scored was
        recorded (``record_sequences`` set after some updates)."""
        width = int(self.totals().numel())
        with self.sync_context():
            rows = getattr(self, "sequence_statistics", [])
            found = (dim_zero_cat(rows) if isinstance(rows, Tensor) or rows
                     else torch.zeros(0, width, dtype=torch.float64))
            scored = int(getattr(self, self.sequences_state))
        found = found.reshape(-1, width).to("cpu", torch.float64)
        if found.shape[0] != scored:
            raise RuntimeError(f"{type(self).__name__} scored {scored} sequences and recorded "
                               f"{found.shape[0]}: set record_sequences before the first update")
        return found
