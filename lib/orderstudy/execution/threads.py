"""How the study's OpenMP threads wait: a short spin before they sleep (``quiet_threads``)."""

from __future__ import annotations

import os

# Idle OpenMP threads spin briefly before they sleep: 10,000 spins in libgomp (its own default is
# 300,000; 0 is OMP_WAIT_POLICY=PASSIVE), 1 ms in Intel's OpenMP. See ``quiet_threads``.
SHORT_SPIN = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
# What a user may have set to choose for themselves; ``quiet_threads`` then sets nothing.
THREAD_VARIABLES = ("OMP_WAIT_POLICY", *SHORT_SPIN)


def quiet_threads() -> None:
    """Make idle OpenMP threads spin only briefly before they sleep, in this process and the kernels it starts.

    torch computes on every core by default and its OpenMP threads spin while they wait for each
    other. On cores other work also uses, a spinning thread burns the time slice its partner needs:
    measured on 2 shared cores (load 9), generation with 2 threads ran at 1.6 new tokens/s, with
    1 thread 3.7, with 2 passive threads 3.5. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``)
    costs an idle machine instead: every operator wakes its threads, and on the same idle 2 cores
    (AVX512-BF16) a LoRA step of SmolLM2-135M took 3.28 s passive, 2.91 s with a short spin
    (``GOMP_SPINCOUNT=10000``), 2.83 s with libgomp's default, and greedy decoding ran at 16.7,
    22.2 and 19.5 new tokens/s. Beside one busy process per core the same step took 2.0x, 2.5x
    and 3.9x as long. So the study spins briefly (``SHORT_SPIN``; ``KMP_BLOCKTIME=1`` ms for an
    Intel OpenMP build), unless the user set ``OMP_WAIT_POLICY`` or either variable. It must be
    set before torch loads its OpenMP runtime: the first thing the command line does.
    ``make bench`` measures the three settings on a busy machine.
    """
    if not set(THREAD_VARIABLES) & set(os.environ):
        os.environ.update(SHORT_SPIN)
