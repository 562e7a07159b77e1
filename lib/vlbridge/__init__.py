"""vlbridge: a small trainable bridge between a frozen vision encoder and a frozen causal LM.

Importing the package pins the CPU math library code paths and how their threads wait, and keeps
Hugging Face offline, before torch is loaded, so that runs are repeatable here and elsewhere (see
CONVENTIONS.md: AVX2 pins gave the same results and speed as the default on this machine, and keep
AVX-512 machines on the same path). Existing settings win: export HF_HUB_OFFLINE=0 to let
transformers download.
"""
import os

# The math libraries' code paths and offline Hugging Face: what every process of the book needs.
PINNED_ENVIRONMENT = {
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # A torch CPU thread that waits for the others spins ~0.01 ms, not libgomp's ~3 ms, then sleeps:
    # beside one busy process the long spin made chapter 3's steps 3.3x slower, this 2.3x, for 8% alone
    # (benchmarks/contention.py). It changes when threads run, never what they compute.
    "GOMP_SPINCOUNT": "1000",
}


def kernel_environment(threads: int) -> dict[str, str]:
    """What a chapter's kernel must see for a repeatable run (CONVENTIONS.md, determinism)."""
    return PINNED_ENVIRONMENT | {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "VLBRIDGE_PROGRESS": "0",  # a headless notebook records no progress bars in its outputs
    }


for _name, _value in PINNED_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
