"""vlbridge: a small trainable bridge between a frozen vision encoder and a frozen causal LM.

Importing the package pins the CPU math library code paths and keeps Hugging Face offline, before
torch is loaded, so that runs are repeatable here and elsewhere (see CONVENTIONS.md: AVX2 pins gave
the same results and speed as the default on this machine, and keep AVX-512 machines on the same
path). Existing settings win: export HF_HUB_OFFLINE=0 to let transformers download.
"""
import os

for _name, _value in {
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
