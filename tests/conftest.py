"""Test-session settings."""

import torch

# The tests run tiny tensors, for which one intra-op thread is faster than several and avoids
# thread-synchronisation stalls on a busy machine (CI has 2 cores).
torch.set_num_threads(1)
