"""vlbridge: a small trainable bridge between a frozen vision encoder and a frozen causal LM.

Importing the package pins the CPU math library code paths and keeps Hugging Face offline, before
torch is loaded, so that runs are repeatable here and elsewhere (see CONVENTIONS.md: AVX2 pins gave
the same results and speed as the default on this machine, and keep AVX-512 machines on the same
path). Existing settings win: export HF_HUB_OFFLINE=0 to let transformers download.
"""
import os

# The math libraries' code paths and offline Hugging Face: what every process of the book needs.
PINNED_ENVIRONMENT = {
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
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
