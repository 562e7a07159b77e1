"""Loaders for the standard dataset formats: they read the real files and the microworld's exports."""
from .audio import AudioRecord, load_audio_captions, read_wav
from .cc3m import Cc3mRecord, load_cc3m_tsv
from .coco import CaptionRecord, load_coco_captions
from .dataset import ImageCaptionDataset, collate_image_captions, to_tensor
from .errors import DataError
from .esp import ESP_CAPTION_FIELDS, StyledRecord, load_esp
from .images import open_image
from .karpathy import KARPATHY_SPLITS, KARPATHY_TRAIN, KarpathyRecord, load_karpathy
from .sharding import split_for_rank
from .visdial import DialogRecord, Round, load_visdial
from .vist import StoryRecord, load_vist_sis
from .vqax import VQAXRecord, load_vqax
from .webdataset import WebDatasetRecord, load_webdataset, read_shard, shard_paths, shards_for_rank

__all__ = [
    "ESP_CAPTION_FIELDS",
    "KARPATHY_SPLITS",
    "KARPATHY_TRAIN",
    "AudioRecord",
    "CaptionRecord",
    "Cc3mRecord",
    "DataError",
    "DialogRecord",
    "ImageCaptionDataset",
    "KarpathyRecord",
    "Round",
    "StoryRecord",
    "StyledRecord",
    "VQAXRecord",
    "WebDatasetRecord",
    "collate_image_captions",
    "load_audio_captions",
    "load_cc3m_tsv",
    "load_coco_captions",
    "load_esp",
    "load_karpathy",
    "load_visdial",
    "load_vist_sis",
    "load_vqax",
    "load_webdataset",
    "open_image",
    "read_shard",
    "read_wav",
    "shard_paths",
    "shards_for_rank",
    "split_for_rank",
    "to_tensor",
]
