"""One limit on new tokens for every captioner (issue 17: the prefix captioners stopped at 24 while
FROMAGe had 40, and three-object captions were cut mid-phrase)."""
import inspect

from tokenizers.pre_tokenizers import Whitespace

from vlbridge import bridge, world
from vlbridge.book.config import chapter_parameters
from vlbridge.methods.fromage import Fromage
from vlbridge.methods.prefix import PLAIN_PROMPT, PrefixConfig


def test_every_captioner_stops_at_the_same_limit():
    assert chapter_parameters("04_reward_rl")["max_new_tokens"].default == bridge.CAPTION_TOKENS
    assert PrefixConfig("micro-clip:patches", 8).max_new_tokens == bridge.CAPTION_TOKENS  # ClipCap, ESPER
    assert inspect.signature(Fromage.caption).parameters["max_new_tokens"].default == bridge.CAPTION_TOKENS


def test_the_limit_fits_the_longest_caption_of_the_microworld():
    """The stand-in LM's tokenizer is word-level over whitespace and punctuation, so a caption's tokens
    are its pre-tokenized pieces; three objects, each with size, colour and a two-word position, fit."""
    pieces = Whitespace()
    scenes = world.scenes(world.HELDOUT_START, 3000)
    lengths = {len(s.objects): 0 for s in scenes}
    for scene in scenes:
        caption = world.canonical_caption(scene).removeprefix(PLAIN_PROMPT + " ")
        lengths[len(scene.objects)] = max(lengths[len(scene.objects)], len(pieces.pre_tokenize_str(caption)))
    assert max(lengths) == 3 and lengths[3] > 24  # three objects occur, and 24 tokens cut them
    assert max(lengths.values()) <= bridge.CAPTION_TOKENS
